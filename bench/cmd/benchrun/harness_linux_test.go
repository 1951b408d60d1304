package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/bench"
	"github.com/hoptrace/hoptrace/internal/testenv"
)

// TestHarness runs the real harness, shortened: two rounds of one-second runs
// of every setup but Caddy (a 5-minute build; `make bench` has it) over an
// HTTP/1.1, a connection-per-request and a gRPC scenario, on a real node in a
// box with real BPF, iptables, nginx and fortio. It checks what make bench's
// report is built on: one median per cell over both rounds, every run
// recorded, no errors, spans exported by the traced setup only, proxy CPU and
// memory measured, and connection tracking on in the iptables pods only.
func TestHarness(t *testing.T) {
	testenv.RequirePrivileged(t)
	fortio := toolPath(t, "fortio", filepath.Join(cacheDir(), "bin", "fortio"))
	nginx := toolPath(t, "nginx", "/usr/sbin/nginx")
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		if _, err := os.Stat("/usr/sbin/iptables-restore"); err != nil {
			testenv.Unavailable(t, "iptables is not installed (make bench-tools)")
		}
	}
	os.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin:/sbin")

	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	for _, pkg := range []string{"../../../cmd/hoptrace", "../otlpsink", "../iptproxy"} {
		out, err := exec.Command("go", "build", "-o", bin+"/", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	cfg := config{
		binDir:    bin,
		fortio:    fortio,
		nginx:     nginx,
		workDir:   filepath.Join(dir, "run"),
		out:       filepath.Join(dir, "results.json"),
		runs:      filepath.Join(dir, "results.runs.json"),
		meta:      filepath.Join(dir, "results.meta.json"),
		duration:  time.Second,
		settle:    time.Second,
		rounds:    2,
		setups:    []string{"direct", "hoptrace-100", "hoptrace-0", "nginx", "iptables"},
		scenarios: []string{"http-1k", "http-close-1k", "grpc-1k"},
		command:   t.Name(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		t.Fatalf("benchrun: %v", err)
	}

	var sums []bench.Summary
	var runs []bench.Result
	var meta bench.Meta
	for path, v := range map[string]any{cfg.out: &sums, cfg.runs: &runs, cfg.meta: &meta} {
		if err := bench.ReadJSON(path, v); err != nil {
			t.Fatal(err)
		}
	}
	if want := len(cfg.setups) * len(cfg.scenarios); len(sums) != want || len(runs) != 2*want {
		t.Fatalf("%d medians and %d runs, want %d and %d", len(sums), len(runs), want, 2*want)
	}
	for _, r := range runs {
		if r.Errors != 0 || r.Requests == 0 {
			t.Errorf("%s/%s round %d: %d errors in %d requests", r.Scenario, r.Setup, r.Round, r.Errors, r.Requests)
		}
	}
	for _, s := range sums {
		cell := s.Scenario + "/" + s.Setup
		if s.Runs != 2 {
			t.Errorf("%s: median over %d rounds, want 2", cell, s.Runs)
		}
		// Fortio holds the rate: a setup far below 1,000 req/s for one second
		// is broken, not slow (the margin is for a CI machine running other
		// packages' tests at the same time).
		if s.RPS < 800 || s.RPSMin > s.RPS || s.RPSMax < s.RPS {
			t.Errorf("%s: %.0f req/s (%.0f–%.0f)", cell, s.RPS, s.RPSMin, s.RPSMax)
		}
		if !(s.P50us > 0 && s.P50us <= s.P90us && s.P90us <= s.P99us && s.P99us <= s.P999us) {
			t.Errorf("%s: percentiles out of order: %v %v %v %v", cell, s.P50us, s.P90us, s.P99us, s.P999us)
		}
		proxied := s.Setup != "direct"
		if proxied != (s.CPUSeconds > 0) || proxied != (s.RSSMB > 0) {
			t.Errorf("%s: proxy CPU %.2fs, RSS %.1f MB", cell, s.CPUSeconds, s.RSSMB)
		}
		// Every traced request is four spans; batches may spill into the next
		// run, so the count is checked loosely.
		perReq := float64(s.Spans) / float64(s.Requests)
		switch {
		case s.Setup == "hoptrace-100" && (perReq < 3 || perReq > 5):
			t.Errorf("%s: %.2f spans per request, want about 4", cell, perReq)
		case s.Setup != "hoptrace-100" && s.Spans != 0:
			t.Errorf("%s: %d spans from an untraced setup", cell, s.Spans)
		}
	}
	if len(meta.Rounds) != 2 {
		t.Fatalf("meta has %d rounds, want 2", len(meta.Rounds))
	}
	for _, r := range meta.Rounds {
		for setup, n := range r.Conntrack {
			if (setup == "iptables") != (n > 0) {
				t.Errorf("round %d: %d conntrack entries in the pods with %s", r.Round, n, setup)
			}
		}
	}
}

// toolPath finds a tool on PATH or at fallback.
func toolPath(t *testing.T, name, fallback string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	testenv.Unavailable(t, name+" is not installed (make bench-tools)")
	return ""
}

// cacheDir is scripts/bench.sh's tool cache.
func cacheDir() string {
	if d := os.Getenv("HOPTRACE_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "hoptrace")
}
