package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/hoptrace/hoptrace/agent"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/pods"
)

// hoptraceSetup is the real agent binary capturing both pods with eBPF,
// exporting spans to the OTLP receiver. crossNode runs two agents, as on two
// nodes: node A's captures the client pod, node B's the server pod, each with
// its own pin dir, pods file and admin socket, and each trusting the other
// node's pods' sampling decisions (--mesh-networks), as a real cluster is
// configured. fastPath turns on the sk_msg fast path for the in-pod legs;
// tcpHop turns the local hand-off off, so that the same-node hop goes through
// TCP between the agent's two proxies. service has fortio call a Service's
// virtual IP instead of the server pod's address: a DNAT in the client pod
// (kube-proxy's part) sends the calls on, so the agent's two proxies see
// different four-tuples and pair by connection identity (package connid).
// allCores fixes --cores at every CPU of the machine, as the agent ran before
// --cores auto (package cores).
type hoptraceSetup struct {
	sampleRate float64
	fastPath   bool
	crossNode  bool
	tcpHop     bool
	service    bool
	allCores   bool
	agents     []*benchAgent
	natPod     *nodebox.Pod // where service's DNAT is, to remove
}

// benchAgent is one agent process of a setup.
type benchAgent struct {
	proc   *proc
	admin  string
	pinDir string
	pods   int // pods it captures
}

func (h *hoptraceSetup) name() string {
	n := fmt.Sprintf("hoptrace-%g", h.sampleRate*100)
	if h.crossNode {
		n += "-xnode"
	}
	if h.fastPath {
		n += "-fastpath"
	}
	if h.tcpHop {
		n += "-tcphop"
	}
	if h.service {
		n += "-svc"
	}
	if h.allCores {
		n += "-allcores"
	}
	return n
}

func (h *hoptraceSetup) target(e *env, s scenario) string {
	if !h.service {
		return transparentTarget(e, s)
	}
	if s.grpc {
		return netip.AddrPortFrom(serviceVIP(e), grpcPort).String()
	}
	return "http://" + netip.AddrPortFrom(serviceVIP(e), httpPort).String() + "/echo"
}

// serviceVIP is the service setup's virtual IP: an address of the pods'
// subnet that no pod has.
func serviceVIP(e *env) netip.Addr {
	a := e.server.IPv4.As4()
	return netip.AddrFrom4([4]byte{a[0], a[1], a[2], 251})
}

func serviceRules(e *env) string {
	return fmt.Sprintf(`*nat
:HTBENCH_SVC - [0:0]
-A HTBENCH_SVC -d %[1]s -p tcp --dport %[3]d -j DNAT --to-destination %[2]s:%[3]d
-A HTBENCH_SVC -d %[1]s -p tcp --dport %[4]d -j DNAT --to-destination %[2]s:%[4]d
-A OUTPUT -p tcp -j HTBENCH_SVC
COMMIT
`, serviceVIP(e), e.server.IPv4, httpPort, grpcPort)
}

const serviceUnrules = `*nat
-D OUTPUT -p tcp -j HTBENCH_SVC
-F HTBENCH_SVC
-X HTBENCH_SVC
COMMIT
`

// usesNAT: the service setup's DNAT turns connection tracking on in the
// client pod.
func (h *hoptraceSetup) usesNAT() bool { return h.service }

func (h *hoptraceSetup) pids() []int {
	var out []int
	for _, a := range h.agents {
		out = append(out, a.proc.pid())
	}
	return out
}

// variantScenarios are what the fast path and cross-node variants run: enough
// to compare with the same-node agent (latency at 1k, the maxima, new
// connections), not the whole matrix, which would make make bench twice as long.
var variantScenarios = []string{"http-1k", "http-max", "http-close-max", "grpc-1k", "grpc-max"}

func (h *hoptraceSetup) runsScenario(name string) bool {
	if !h.fastPath && !h.crossNode && !h.tcpHop && !h.service && !h.allCores {
		return true
	}
	return slices.Contains(variantScenarios, name)
}

func (h *hoptraceSetup) start(ctx context.Context, e *env) error {
	if h.service {
		if err := iptablesRestore(ctx, e.client, serviceRules(e)); err != nil {
			return err
		}
		h.natPod = e.client
	}
	groups := [][]*nodebox.Pod{{e.client, e.server}}
	if h.crossNode {
		groups = [][]*nodebox.Pod{{e.client}, {e.server}}
	}
	for i, group := range groups {
		a, err := h.startAgent(e, i, group)
		if a != nil {
			h.agents = append(h.agents, a)
		}
		if err != nil {
			h.stop()
			return err
		}
	}
	for _, a := range h.agents {
		if err := a.awaitCaptured(ctx, a.pods, 30*time.Second); err != nil {
			h.stop()
			return err
		}
	}
	return nil
}

// startAgent starts agent number i ("node" A, B, …) capturing pods.
func (h *hoptraceSetup) startAgent(e *env, i int, group []*nodebox.Pod) (*benchAgent, error) {
	node := "bench-" + e.node.ID
	suffix := ""
	if h.crossNode {
		suffix = "-" + string(rune('a'+i))
		node += suffix
	}
	podsFile := filepath.Join(e.cfg.workDir, h.name()+suffix+"-pods.yaml")
	var entries []pods.FileEntry
	for _, p := range group {
		entries = append(entries, pods.FileEntry{
			Name: p.Name, Namespace: "bench", Netns: p.NetnsPath, Cgroup: p.CgroupDir,
			Labels: map[string]string{"app": p.Name},
		})
	}
	b, err := yaml.Marshal(entries)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(podsFile, b, 0o644); err != nil {
		return nil, err
	}
	a := &benchAgent{
		admin:  filepath.Join(e.cfg.workDir, h.name()+suffix+".sock"),
		pinDir: "/sys/fs/bpf/hoptrace-bench-" + e.node.ID + suffix,
		pods:   len(group),
	}
	args := []string{"agent",
		"--pods-file", podsFile,
		"--admin-socket", a.admin,
		"--pin-dir", a.pinDir,
		"--node-name", node,
		"--sample-rate", strconv.FormatFloat(h.sampleRate, 'g', -1, 64),
		"--fast-path=" + strconv.FormatBool(h.fastPath),
		"--local-handoff=" + strconv.FormatBool(!h.tcpHop),
		"--otlp-endpoint", "http://" + e.otlpAddr,
		"--log-level", "warn",
	}
	if h.allCores {
		args = append(args, "--cores", strconv.Itoa(runtime.NumCPU()))
	}
	if h.crossNode {
		// The other node's pods are peers: their sampled flags count.
		args = append(args, "--mesh-networks", e.node.Subnet4.String()+","+e.node.Subnet6.String())
	}
	cmd := exec.Command(filepath.Join(e.cfg.binDir, "hoptrace"), args...)
	// A cgroup of its own, as a DaemonSet's container has: there it attaches
	// its connection-identity program (hops through Services), as in a
	// cluster.
	cgDir, err := e.node.AddCgroup("agent-" + h.name() + suffix)
	if err != nil {
		return nil, err
	}
	cg, err := os.Open(cgDir)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if a.proc, err = startProc(e.cfg.workDir, "agent-"+h.name()+suffix, nil, cmd); err != nil {
		return nil, err
	}
	return a, nil
}

// awaitCaptured waits until the agent is ready and reports n attached pods.
func (a *benchAgent) awaitCaptured(ctx context.Context, n int, timeout time.Duration) error {
	c := agent.NewClient(a.admin)
	deadline := time.Now().Add(timeout)
	for {
		var err error
		if err = c.Ready(ctx); err == nil {
			var r agent.PodsReport
			if r, err = c.Pods(ctx); err == nil {
				attached := 0
				for _, p := range r.Pods {
					if p.State == "attached" {
						attached++
					}
				}
				if attached >= n {
					return nil
				}
				err = fmt.Errorf("%d of %d pods attached", attached, n)
			}
		}
		if !a.proc.alive() {
			return fmt.Errorf("agent exited: %s", a.proc.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not capturing after %s: %w: %s", timeout, err, a.proc.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// verify checks that the warm-up really went through every agent's proxies,
// that a same-node hop was handed off (or not, with tcpHop), and with the fast
// path on, that it moved app bytes.
func (h *hoptraceSetup) verify(ctx context.Context, e *env) error {
	for _, a := range h.agents {
		m, err := a.metrics(ctx)
		if err != nil {
			return err
		}
		if m["hoptrace_requests_total"] == 0 {
			return fmt.Errorf("agent %s proxied no request: traffic is not captured", a.admin)
		}
		matched := m[`hoptrace_local_handoffs_total{result="matched"}`]
		switch sameNode := !h.crossNode && !h.tcpHop; {
		case sameNode && matched == 0:
			return fmt.Errorf("agent %s handed no same-node hop off: %v", a.admin, m)
		case !sameNode && matched != 0:
			return fmt.Errorf("agent %s handed %v hops off, want none", a.admin, matched)
		}
		if h.fastPath {
			if m[`hoptrace_fastpath_sends_total{path="redirected"}`] == 0 {
				return fmt.Errorf("agent %s: the sk_msg fast path redirected nothing: %v", a.admin, m)
			}
			log.Printf("   fast path after the warm-up: %.0f app sends redirected (%.0f bytes), %.0f on TCP (no peer), %.0f on TCP (sent over TCP before)",
				m[`hoptrace_fastpath_sends_total{path="redirected"}`], m["hoptrace_fastpath_redirected_bytes_total"],
				m[`hoptrace_fastpath_sends_total{path="tcp-no-peer"}`], m[`hoptrace_fastpath_sends_total{path="tcp-sent-over-tcp-before"}`])
		}
	}
	return nil
}

// metrics reads the agent's /metrics: hoptrace_requests_total summed over its
// labels, and the fast path's series as they are named.
func (a *benchAgent) metrics(ctx context.Context) (map[string]float64, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", a.admin)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent metrics: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch key := line[:i]; {
		case strings.HasPrefix(key, "hoptrace_requests_total{"):
			out["hoptrace_requests_total"] += v
		case strings.HasPrefix(key, "hoptrace_fastpath_"), strings.HasPrefix(key, "hoptrace_local_handoffs_total"):
			out[key] = v
		}
	}
	return out, sc.Err()
}

func (h *hoptraceSetup) stop() error {
	var errs []error
	for _, a := range h.agents {
		if a.proc != nil {
			// The agent drains its proxies, flushes spans and removes its BPF state.
			errs = append(errs, a.proc.stop(20*time.Second))
		}
		if _, err := os.Stat(a.pinDir); err == nil {
			errs = append(errs, os.RemoveAll(a.pinDir))
		}
	}
	h.agents = nil
	if h.natPod != nil {
		errs = append(errs, iptablesRestore(context.Background(), h.natPod, serviceUnrules))
		h.natPod = nil
	}
	return errors.Join(errs...)
}

func (h *hoptraceSetup) traces() bool { return h.sampleRate > 0 }
