package agent

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
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

// startAdminAgent runs a real agent (without BPF: its pin dir is not on a
// bpffs, so it touches no pod) with its admin API on a unix socket and on a
// loopback TCP port, and returns an HTTP client for each.
func startAdminAgent(t *testing.T, full bool) (sock, tcp *http.Client, tcpBase string) {
	t.Helper()
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	podsFile := filepath.Join(dir, "pods.yaml")
	if err := os.WriteFile(podsFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A free loopback port: bind, note, release. The agent binds it a moment later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	socket := filepath.Join(dir, "admin.sock")
	runAgent(t, Config{
		Sources:       []pods.Source{&pods.FileSource{Path: podsFile}},
		PinDir:        filepath.Join(dir, "not-bpffs", "hoptrace"),
		AdminSocket:   socket,
		AdminAddr:     addr,
		AdminAddrFull: full,
		Exporter:      exporter.Config{Endpoint: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)},
		Logger:        slog.New(slog.DiscardHandler),
	})
	sock = NewClient(socket).hc
	tcp = &http.Client{Timeout: 5 * time.Second}
	tcpBase = "http://" + addr
	// Both listeners answer once /healthz does on each.
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range []struct {
		hc  *http.Client
		url string
	}{{sock, "http://agent/healthz"}, {tcp, tcpBase + "/healthz"}} {
		for {
			resp, err := c.hc.Get(c.url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", c.url, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return sock, tcp, tcpBase
}

func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// Shown: by default the admin TCP address serves what kubelet probes and
// Prometheus need and nothing that shows pods' connections; the root-only
// socket serves everything.
func TestAdminAddrServesProbesAndMetricsOnly(t *testing.T) {
	sock, tcp, base := startAdminAgent(t, false)

	if code, _ := get(t, tcp, base+"/healthz"); code != http.StatusOK {
		t.Errorf("TCP /healthz: %d, want 200", code)
	}
	// Unready (no BPF here), but served: 503 with the reason, not 404.
	if code, body := get(t, tcp, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Errorf("TCP /readyz: %d %q, want 503 not ready", code, body)
	}
	if code, body := get(t, tcp, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "hoptrace_attached_pods") {
		t.Errorf("TCP /metrics: %d, want 200 with hoptrace_attached_pods", code)
	}
	for _, p := range []string{"/pods", "/flows", "/flows?pod=a", "/flows?watch=true"} {
		code, body := get(t, tcp, base+p)
		if code != http.StatusNotFound || !strings.Contains(body, "--admin-addr-full") {
			t.Errorf("TCP %s: %d %q, want 404 naming --admin-addr-full", p, code, body)
		}
		if strings.Contains(body, `"pods"`) || strings.Contains(body, `"flows"`) {
			t.Errorf("TCP %s leaked the report: %q", p, body)
		}
	}

	code, body := get(t, sock, "http://agent/pods")
	var pr PodsReport
	if code != http.StatusOK || json.Unmarshal([]byte(body), &pr) != nil {
		t.Errorf("socket /pods: %d %q, want 200 with a pods report", code, body)
	}
	code, body = get(t, sock, "http://agent/flows")
	var fr FlowsReport
	if code != http.StatusOK || json.Unmarshal([]byte(body), &fr) != nil {
		t.Errorf("socket /flows: %d %q, want 200 with a flows report", code, body)
	}
	if code, _ := get(t, sock, "http://agent/metrics"); code != http.StatusOK {
		t.Errorf("socket /metrics: %d, want 200", code)
	}
}

// Shown: --admin-addr-full serves /pods and /flows on the TCP address too.
func TestAdminAddrFullServesEverything(t *testing.T) {
	_, tcp, base := startAdminAgent(t, true)
	code, body := get(t, tcp, base+"/pods")
	var pr PodsReport
	if code != http.StatusOK || json.Unmarshal([]byte(body), &pr) != nil {
		t.Errorf("TCP /pods with --admin-addr-full: %d %q, want 200 with a pods report", code, body)
	}
	code, body = get(t, tcp, base+"/flows")
	var fr FlowsReport
	if code != http.StatusOK || json.Unmarshal([]byte(body), &fr) != nil {
		t.Errorf("TCP /flows with --admin-addr-full: %d %q, want 200 with a flows report", code, body)
	}
}
