package jaegertest

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLifecycle starts a real Jaeger, kills it and starts it again on the same
// ports, as the exporter's outage tests do.
func TestLifecycle(t *testing.T) {
	j := Start(t)
	services, err := j.Services()
	if err != nil || len(services) != 0 {
		t.Fatalf("fresh Jaeger: services %v, %v; want none", services, err)
	}
	if n, err := j.AcceptedSpans(); err != nil || n != 0 {
		t.Fatalf("fresh Jaeger: accepted %d spans, %v; want 0", n, err)
	}
	if _, err := j.Trace("0af7651916cd43dd8448eb211c80319c"); err == nil {
		t.Error("Trace of an unknown id succeeded")
	}
	pid := j.PID()
	if err := j.Kill(); err != nil {
		t.Fatal(err)
	}
	if j.PID() != 0 {
		t.Error("PID after Kill")
	}
	if c, err := net.DialTimeout("tcp", j.OTLPGRPCAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("OTLP port still open after Kill")
	}
	if err := j.Start(); err != nil {
		t.Fatalf("restart on the same ports: %v", err)
	}
	if j.PID() == pid || j.PID() == 0 {
		t.Errorf("restart: pid %d, first pid %d", j.PID(), pid)
	}
	for _, addr := range []string{j.OTLPGRPCAddr, j.OTLPHTTPURL[len("http://"):], j.QueryURL[len("http://"):]} {
		host, _, _ := net.SplitHostPort(addr)
		if host != "127.0.0.1" {
			t.Errorf("%s is not on loopback", addr)
		}
	}
	if err := j.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := j.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestBinaryPath(t *testing.T) {
	t.Setenv("HOPTRACE_JAEGER_BIN", "")
	t.Setenv("HOPTRACE_CACHE", "/cache")
	if got := BinaryPath(); got != "/cache/bin/jaeger" {
		t.Errorf("BinaryPath() = %q with HOPTRACE_CACHE=/cache", got)
	}
	t.Setenv("HOPTRACE_JAEGER_BIN", "/opt/jaeger")
	if got := BinaryPath(); got != "/opt/jaeger" {
		t.Errorf("BinaryPath() = %q with HOPTRACE_JAEGER_BIN", got)
	}
	if _, err := Binary(); err == nil {
		t.Error("Binary() found /opt/jaeger")
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := tail(p, 2); got != "c\nd" {
		t.Errorf("tail 2 = %q", got)
	}
	if got := tail(p, 10); got != "a\nb\nc\nd" {
		t.Errorf("tail 10 = %q", got)
	}
}
