package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/nodebox"
)

// Ports of the fortio server in the server pod.
const (
	httpPort = 8080
	grpcPort = 8079
)

// env is what every setup shares: the node, the client and server pods, the
// fortio server and the OTLP receiver.
type env struct {
	cfg    config
	round  int // 1, 2, …
	node   *nodebox.Node
	client *nodebox.Pod
	server *nodebox.Pod

	fortio   *proc
	sink     *proc
	otlpAddr string // the receiver in the host netns, host:port
	statsURL string
}

// newEnv builds the node, starts the fortio server and the OTLP receiver. On
// error everything it made is removed.
func newEnv(ctx context.Context, cfg config) (_ *env, err error) {
	e := &env{cfg: cfg}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.node, err = nodebox.New(); err != nil {
		return nil, err
	}
	// scripts/bench.sh removes what this id names if this process dies
	// without cleaning up (SIGKILL, OOM).
	if err := os.WriteFile(cfg.nodeIDFile, []byte(e.node.ID+"\n"), 0o644); err != nil {
		return nil, err
	}
	if e.client, err = e.node.AddPod("client"); err != nil {
		return nil, err
	}
	if e.server, err = e.node.AddPod("server"); err != nil {
		return nil, err
	}
	for _, p := range []*nodebox.Pod{e.client, e.server} {
		// One connection per request runs through tens of thousands of ports
		// in a few seconds: widen the range and reuse TIME_WAIT ports, inside
		// the pods' own namespaces only. The ports the setups listen on are
		// kept out of it: a connection that took 15002 as its own port (or
		// its TIME_WAIT, a minute later) made the next nginx's bind fail.
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", p.NetnsName, "sysctl", "-q", "-w",
			"net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1",
			"net.ipv4.ip_local_reserved_ports="+reservedPorts).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("pod %s sysctl: %w: %s", p.Name, err, out)
		}
	}
	e.fortio, err = startProc(cfg.workDir, "fortio-server", e.server, exec.Command(cfg.fortio, "server",
		"-http-port", fmt.Sprint(httpPort), "-grpc-port", fmt.Sprint(grpcPort),
		"-redirect-port", "disabled", "-tcp-port", "disabled", "-udp-port", "disabled", "-loglevel", "Warning"))
	if err != nil {
		return nil, err
	}
	for _, port := range []int{httpPort, grpcPort} {
		if err := waitDial(ctx, e.server, e.serverAddr(port), 15*time.Second); err != nil {
			return nil, fmt.Errorf("fortio server: %w: %s", err, e.fortio.tail())
		}
	}
	var line string
	e.sink, line, err = startAndAwaitLine(ctx, cfg.workDir, "otlpsink", nil, exec.Command(filepath.Join(cfg.binDir, "otlpsink"),
		"-netns", e.client.NetnsPath, "-netns", e.server.NetnsPath), "ready ", 15*time.Second)
	if err != nil {
		return nil, err
	}
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "otlp="); ok {
			e.otlpAddr = v
		}
		if v, ok := strings.CutPrefix(f, "stats="); ok {
			e.statsURL = "http://" + v + "/"
		}
	}
	if e.otlpAddr == "" || e.statsURL == "" {
		return nil, fmt.Errorf("otlpsink: unexpected ready line %q", line)
	}
	return e, nil
}

// serverAddr is the server pod's address on port, as the client dials it.
func (e *env) serverAddr(port int) string {
	return netip.AddrPortFrom(e.server.IPv4, uint16(port)).String()
}

// conntrackEntries is the number of connection tracking entries in the
// client and server pods' namespaces: 0 after traffic means conntrack is off
// there. Without the nf_conntrack module there is no count, and no tracking.
func (e *env) conntrackEntries() (int, error) {
	total := 0
	for _, p := range []*nodebox.Pod{e.client, e.server} {
		err := p.Do(func() error {
			// /proc/sys/net belongs to the netns of the thread that opens it.
			b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimSpace(string(b)))
			total += n
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("conntrack count: %w", err)
		}
	}
	return total, nil
}

// spans returns how many spans the OTLP receiver has got so far.
func (e *env) spans(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.statsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("otlpsink stats: %w", err)
	}
	defer resp.Body.Close()
	var s struct{ Spans int64 }
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return 0, fmt.Errorf("otlpsink stats: %w", err)
	}
	return s.Spans, nil
}

// close stops the helpers and removes the node (which kills whatever still runs
// in the pods).
func (e *env) close() error {
	var errs []error
	if e.sink != nil {
		errs = append(errs, e.sink.stop(5*time.Second))
	}
	if e.node != nil {
		errs = append(errs, e.node.Close())
	}
	if e.fortio != nil {
		e.fortio.stop(time.Second) // already killed with its pod
	}
	return errors.Join(errs...)
}
