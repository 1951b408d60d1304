package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/pods"
)

// Shown: when BPF cannot be loaded (here: the pin dir is not on a bpffs, the
// same path a kernel without a needed feature takes), the agent stays up,
// reports why in /readyz and its log, and touches no pod.
func TestAgentUnreadyWithoutBPF(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	podsFile := filepath.Join(dir, "pods.yaml")
	os.WriteFile(podsFile, []byte("- {name: a, netns: /proc/self/ns/net, cgroup: /sys/fs/cgroup}\n"), 0o644)
	var logs strings.Builder
	logw := &syncWriter{w: &logs}
	socket := filepath.Join(dir, "admin.sock")
	runAgent(t, Config{
		Sources:     []pods.Source{&pods.FileSource{Path: podsFile}},
		PinDir:      filepath.Join(dir, "not-bpffs", "hoptrace"),
		AdminSocket: socket,
		Exporter:    exporter.Config{Endpoint: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)},
		Logger:      slog.New(slog.NewTextHandler(logw, nil)),
		Reconcile:   200 * time.Millisecond,
	})

	hc := NewClient(socket).hc
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get("http://agent/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(body, "not on a bpf filesystem") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %q, %v; want 503 naming the problem", body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a few reconcile ticks
	r, err := NewClient(socket).Pods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Pods) != 0 {
		t.Errorf("pods touched without BPF: %+v", r.Pods)
	}
	resp, err := hc.Get("http://agent/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %v %v", resp, err)
	}
	logw.mu.Lock()
	logged := logs.String()
	logw.mu.Unlock()
	if !strings.Contains(logged, "cannot load BPF programs") {
		t.Errorf("log does not say why: %s", logged)
	}
}

// runAgent builds an agent from cfg and runs it until the test ends.
func runAgent(t *testing.T, cfg Config) {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
