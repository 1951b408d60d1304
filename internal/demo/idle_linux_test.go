package demo

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Issue 11 item 6, as a user runs it: the agent binary with
// --splice-idle-timeout closes a captured connection that is not HTTP and on
// which nobody says anything, on both sides, and counts it.
func TestSilentConnectionClosedE2E(t *testing.T) {
	const idle = 2 * time.Second
	env := up(t, "http://127.0.0.1:1", "--splice-idle-timeout", idle.String())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A server that speaks only when spoken to (a database, say), in the emoji pod.
	ln, err := env.Pods["emoji"].Listen("tcp4", "0.0.0.0:5432")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	appSaw := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			appSaw <- err
			return
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		appSaw <- err
	}()

	// The client pod's app connects and waits for bytes that never come.
	script := fmt.Sprintf("exec 3<>/dev/tcp/%s/5432 && cat <&3 && echo closed", env.Pods["emoji"].IPv4)
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := env.Pods["client"].Run(cmd); err != nil {
		t.Fatalf("client: %v: %s", err, out.String())
	}
	took := time.Since(began)
	if strings.TrimSpace(out.String()) != "closed" {
		t.Fatalf("client saw %q, want a clean close", out.String())
	}
	if took < idle {
		t.Errorf("closed after %v, before the %v idle timeout", took, idle)
	}
	select {
	case err := <-appSaw:
		if err != io.EOF {
			t.Errorf("the server's side ended with %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server's side of the connection was left open")
	}
	series := `hoptrace_splice_idle_closed_total{direction="outbound",namespace="demo",pod="client"}`
	if v := metricValue(adminMetrics(t, env.AdminSocket), series); v != 1 {
		t.Errorf("%s = %v, want 1", series, v)
	}
}
