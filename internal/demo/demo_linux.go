// Package demo builds hoptrace's node in a box: simulated pods running the sample
// app (client → hello → world → emoji over HTTP/1.1 and gRPC), captured by a real
// agent process with real BPF, exporting to a real Jaeger. `make demo` and the
// end-to-end tests both use it.
package demo

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/hoptrace/hoptrace/agent"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/pods"
)

// Config says where the binaries are and where spans go.
type Config struct {
	BinDir       string // holds hoptrace and sampleapp
	WorkDir      string // pods file, logs, admin socket
	OTLPEndpoint string // the agent's --otlp-endpoint
	AgentArgs    []string
	Log          io.Writer // progress and app logs; nil discards
}

// Env is a running node in a box.
type Env struct {
	cfg         Config
	Node        *nodebox.Node
	Pods        map[string]*nodebox.Pod // client, hello, world, emoji, legacy-a, legacy-b
	PodsFile    string
	AdminSocket string
	PinDir      string

	mu      sync.Mutex
	agent   *exec.Cmd
	agentCg string // the agent's cgroup
	apps    []*exec.Cmd
}

// Service ports of the sample apps.
const (
	HelloPort  = 8080
	WorldPort  = 8080
	EmojiPort  = 9090
	LegacyPort = 8080
)

// podNames are the demo's pods: the client, the sample app's three services
// (they forward trace headers), and two apps that forward none, traced by
// context inference: client → legacy-a → legacy-b → world → emoji.
var podNames = []string{"client", "hello", "world", "emoji", "legacy-a", "legacy-b"}

// inferring are the pods annotated hoptrace.io/context: infer.
var inferring = map[string]bool{"legacy-a": true, "legacy-b": true}

//go:embed legacy.py
var legacyApp []byte

func (e *Env) logf(format string, args ...any) {
	if e.cfg.Log != nil {
		fmt.Fprintf(e.cfg.Log, format+"\n", args...)
	}
}

// Up builds the node, starts the agent with the pods file, waits until it
// captures every pod, then starts the apps. On error everything is removed.
func Up(ctx context.Context, cfg Config) (_ *Env, err error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	e := &Env{cfg: cfg, Pods: map[string]*nodebox.Pod{}}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}
	e.PodsFile = filepath.Join(cfg.WorkDir, "pods.yaml")
	e.AdminSocket = filepath.Join(cfg.WorkDir, "admin.sock")
	e.PinDir = "/sys/fs/bpf/hoptrace-demo-" + filepath.Base(cfg.WorkDir)
	if e.Node, err = nodebox.New(); err != nil {
		return nil, err
	}
	e.logf("node in a box %s: bridge in netns %s, pods on %s and %s", e.Node.ID, e.Node.NetnsName, e.Node.Subnet4, e.Node.Subnet6)
	for _, name := range podNames {
		p, err := e.Node.AddPod(name)
		if err != nil {
			return nil, err
		}
		e.Pods[name] = p
		e.logf("  pod %-6s %s  %s", name, p.IPv4, p.IPv6)
	}
	if err := e.writePodsFile(); err != nil {
		return nil, err
	}
	if err := e.StartAgent(ctx); err != nil {
		return nil, err
	}
	if err := e.WaitCaptured(ctx, len(podNames)); err != nil {
		return nil, err
	}
	hello, world, emoji := e.Pods["hello"], e.Pods["world"], e.Pods["emoji"]
	apps := []struct {
		pod  *nodebox.Pod
		args []string
	}{
		{emoji, []string{"emoji", "--listen", fmt.Sprintf(":%d", EmojiPort)}},
		{world, []string{"world", "--listen", fmt.Sprintf(":%d", WorldPort), "--emoji", netip.AddrPortFrom(emoji.IPv4, EmojiPort).String()}},
		{hello, []string{"hello", "--listen", fmt.Sprintf(":%d", HelloPort), "--world", "http://" + netip.AddrPortFrom(world.IPv4, WorldPort).String()}},
	}
	for _, app := range apps {
		if err := e.startApp(app.pod, app.args...); err != nil {
			return nil, err
		}
	}
	if err := e.startLegacy(); err != nil {
		return nil, err
	}
	for _, app := range apps {
		port := HelloPort
		if app.pod == emoji {
			port = EmojiPort
		}
		if err := waitListening(ctx, app.pod, port); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Env) writePodsFile() error {
	var entries []pods.FileEntry
	for _, name := range podNames {
		p := e.Pods[name]
		entries = append(entries, pods.FileEntry{
			Name: name, Namespace: "demo", Netns: p.NetnsPath, Cgroup: p.CgroupDir,
			Labels: map[string]string{"app": name}, InferContext: inferring[name],
		})
	}
	b, err := yaml.Marshal(entries)
	if err != nil {
		return err
	}
	return os.WriteFile(e.PodsFile, b, 0o644)
}

// StartAgent starts the agent process with the pods file.
func (e *Env) StartAgent(ctx context.Context) error {
	args := append([]string{"agent",
		"--pods-file", e.PodsFile,
		"--admin-socket", e.AdminSocket,
		"--pin-dir", e.PinDir,
		"--node-name", "nodebox-" + e.Node.ID,
		"--sample-rate", "1",
		"--infer-context",
		"--otlp-endpoint", e.cfg.OTLPEndpoint,
	}, e.cfg.AgentArgs...)
	cmd := exec.Command(filepath.Join(e.cfg.BinDir, "hoptrace"), args...)
	logf, err := os.OpenFile(filepath.Join(e.cfg.WorkDir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// A cgroup of its own, as a DaemonSet's container has: the agent attaches
	// its connection-identity program there (package connid), so that hops
	// through a Service's virtual IP are handed off in memory too.
	err = e.agentCgroup()
	if err == nil {
		err = nodebox.StartInCgroup(e.agentCg, cmd)
	}
	logf.Close()
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	e.mu.Lock()
	e.agent = cmd
	e.mu.Unlock()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := agent.NewClient(e.AdminSocket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Ready(ctx)
		if err == nil {
			e.logf("agent pid %d ready (log: %s)", cmd.Process.Pid, filepath.Join(e.cfg.WorkDir, "agent.log"))
			go func() { <-exited }()
			return nil
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("agent exited: %v; see %s", werr, filepath.Join(e.cfg.WorkDir, "agent.log"))
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not ready after 30s: %v", err)
		}
	}
}

// agentCgroup makes the agent's cgroup, below the node's, once: a restarted
// agent runs in the same one.
func (e *Env) agentCgroup() error {
	if e.agentCg != "" {
		return nil
	}
	dir, err := e.Node.AddCgroup("hoptrace-agent")
	if err != nil {
		return err
	}
	e.agentCg = dir
	return nil
}

// AgentPID returns the running agent's pid.
func (e *Env) AgentPID() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.agent == nil || e.agent.Process == nil {
		return 0
	}
	return e.agent.Process.Pid
}

// StopAgent sends sig to the agent and waits for it to exit.
func (e *Env) StopAgent(sig syscall.Signal) error {
	e.mu.Lock()
	cmd := e.agent
	e.agent = nil
	e.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(cmd.Process.Pid, 0) == nil {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return errors.New("agent did not exit within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// WaitCaptured waits until the agent reports n attached pods.
func (e *Env) WaitCaptured(ctx context.Context, n int) error {
	c := agent.NewClient(e.AdminSocket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := c.Pods(ctx)
		attached := 0
		if err == nil {
			for _, p := range r.Pods {
				if p.State == "attached" {
					attached++
				}
			}
			if attached >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent captures %d of %d pods after 30s (%v): %+v", attached, n, err, r)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (e *Env) startApp(p *nodebox.Pod, args ...string) error {
	return e.startProgram(p, filepath.Join(e.cfg.BinDir, "sampleapp"), args...)
}

// startLegacy starts the two apps that forward no headers, in Python:
// legacy-a calls legacy-b, which calls world.
func (e *Env) startLegacy() error {
	py, err := exec.LookPath("python3")
	if err != nil {
		return fmt.Errorf("the apps that forward no headers run in python3: %w (scripts/install-deps.sh test installs it)", err)
	}
	script := filepath.Join(e.cfg.WorkDir, "legacy.py")
	if err := os.WriteFile(script, legacyApp, 0o644); err != nil {
		return err
	}
	a, b := e.Pods["legacy-a"], e.Pods["legacy-b"]
	port := strconv.Itoa(LegacyPort)
	if err := e.startProgram(b, py, script, port, "legacy-b", e.Pods["world"].IPv4.String(), strconv.Itoa(WorldPort)); err != nil {
		return err
	}
	if err := e.startProgram(a, py, script, port, "legacy-a", b.IPv4.String(), port); err != nil {
		return err
	}
	for _, p := range []*nodebox.Pod{b, a} {
		if err := waitListening(context.Background(), p, LegacyPort); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) startProgram(p *nodebox.Pod, prog string, args ...string) error {
	cmd := exec.Command(prog, args...)
	logf, err := os.Create(filepath.Join(e.cfg.WorkDir, p.Name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := p.Start(cmd); err != nil {
		return err
	}
	go cmd.Wait()
	e.mu.Lock()
	e.apps = append(e.apps, cmd)
	e.mu.Unlock()
	return nil
}

// StartClient runs the sample client in the client pod, calling hello every interval.
func (e *Env) StartClient(interval time.Duration) error {
	return e.startApp(e.Pods["client"], "client", "--target", e.HelloURL(), "--interval", interval.String())
}

// StartLegacyClient runs a second client loop in the client pod, calling
// legacy-a (whose calls are linked by inference) every interval.
func (e *Env) StartLegacyClient(interval time.Duration) error {
	return e.startApp(e.Pods["client"], "client", "--target", e.LegacyURL(), "--interval", interval.String())
}

// LegacyURL is legacy-a's address as the client calls it.
func (e *Env) LegacyURL() string {
	return "http://" + netip.AddrPortFrom(e.Pods["legacy-a"].IPv4, LegacyPort).String() + "/"
}

// HelloURL is hello's address as the client calls it.
func (e *Env) HelloURL() string {
	return "http://" + netip.AddrPortFrom(e.Pods["hello"].IPv4, HelloPort).String() + "/"
}

// Request runs one client request from the client pod (its cgroup and netns,
// so it is captured like any app) and returns the response line.
func (e *Env) Request(ctx context.Context, header ...string) (string, error) {
	return e.RequestURL(ctx, e.HelloURL(), header...)
}

// RequestURL is Request to another URL (another path or a query on hello's).
func (e *Env) RequestURL(ctx context.Context, url string, header ...string) (string, error) {
	args := []string{"-s", "--max-time", "10"}
	for _, h := range header {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	cmd := exec.CommandContext(ctx, "curl", args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := e.Pods["client"].Run(cmd); err != nil {
		return "", fmt.Errorf("curl %s: %w: %s", url, err, errb.String())
	}
	return out.String(), nil
}

// Close stops the apps and the agent and removes the node.
func (e *Env) Close() error {
	var errs []error
	errs = append(errs, e.StopAgent(syscall.SIGTERM))
	if e.Node != nil {
		// Removing the pods kills the apps (their cgroups are killed).
		errs = append(errs, e.Node.Close())
	}
	if _, err := os.Stat(e.PinDir); err == nil {
		errs = append(errs, os.RemoveAll(e.PinDir))
	}
	return errors.Join(errs...)
}

func waitListening(ctx context.Context, p *nodebox.Pod, port int) error {
	deadline := time.Now().Add(15 * time.Second)
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String()
	for {
		c, err := p.Dial(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod %s: nothing listens on port %d after 15s", p.Name, port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
