package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/hoptrace/hoptrace/agent"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/pods"
)

// hoptraceSetup is the real agent binary capturing both pods with eBPF,
// exporting spans to the OTLP receiver.
type hoptraceSetup struct {
	sampleRate float64
	agent      *proc
	admin      string
	pinDir     string
}

func (h *hoptraceSetup) name() string {
	return fmt.Sprintf("hoptrace-%g", h.sampleRate*100)
}

func (h *hoptraceSetup) target(e *env, s scenario) string { return transparentTarget(e, s) }

func (h *hoptraceSetup) pids() []int { return []int{h.agent.pid()} }

func (h *hoptraceSetup) start(ctx context.Context, e *env) error {
	podsFile := filepath.Join(e.cfg.workDir, "pods.yaml")
	var entries []pods.FileEntry
	for _, p := range []*nodebox.Pod{e.client, e.server} {
		entries = append(entries, pods.FileEntry{
			Name: p.Name, Namespace: "bench", Netns: p.NetnsPath, Cgroup: p.CgroupDir,
			Labels: map[string]string{"app": p.Name},
		})
	}
	b, err := yaml.Marshal(entries)
	if err != nil {
		return err
	}
	if err := os.WriteFile(podsFile, b, 0o644); err != nil {
		return err
	}
	h.admin = filepath.Join(e.cfg.workDir, h.name()+".sock")
	h.pinDir = "/sys/fs/bpf/hoptrace-bench-" + e.node.ID
	cmd := exec.Command(filepath.Join(e.cfg.binDir, "hoptrace"), "agent",
		"--pods-file", podsFile,
		"--admin-socket", h.admin,
		"--pin-dir", h.pinDir,
		"--node-name", "bench-"+e.node.ID,
		"--sample-rate", strconv.FormatFloat(h.sampleRate, 'g', -1, 64),
		"--otlp-endpoint", "http://"+e.otlpAddr,
		"--log-level", "warn",
	)
	if h.agent, err = startProc(e.cfg.workDir, "agent-"+h.name(), nil, cmd); err != nil {
		return err
	}
	if err := h.awaitCaptured(ctx, 2, 30*time.Second); err != nil {
		h.stop()
		return err
	}
	return nil
}

// awaitCaptured waits until the agent is ready and reports n attached pods.
func (h *hoptraceSetup) awaitCaptured(ctx context.Context, n int, timeout time.Duration) error {
	c := agent.NewClient(h.admin)
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
		if !h.agent.alive() {
			return fmt.Errorf("agent exited: %s", h.agent.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not capturing after %s: %w: %s", timeout, err, h.agent.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// verify checks that the warm-up really went through the agent's proxies.
func (h *hoptraceSetup) verify(ctx context.Context, e *env) error {
	n, err := h.proxiedRequests(ctx)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("agent proxied no request: traffic is not captured")
	}
	return nil
}

// proxiedRequests sums hoptrace_requests_total from the agent's /metrics.
func (h *hoptraceSetup) proxiedRequests(ctx context.Context) (float64, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", h.admin)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("agent metrics: %w", err)
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "hoptrace_requests_total{") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				total += v
			}
		}
	}
	return total, sc.Err()
}

func (h *hoptraceSetup) stop() error {
	var errs []error
	if h.agent != nil {
		// The agent drains its proxies, flushes spans and removes its BPF state.
		errs = append(errs, h.agent.stop(20*time.Second))
	}
	if h.pinDir != "" {
		if _, err := os.Stat(h.pinDir); err == nil {
			errs = append(errs, os.RemoveAll(h.pinDir))
		}
	}
	return errors.Join(errs...)
}

func (h *hoptraceSetup) traces() bool { return h.sampleRate > 0 }
