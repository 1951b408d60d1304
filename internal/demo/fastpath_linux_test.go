package demo

import (
	"context"
	"regexp"
	"testing"
	"time"
)

// Shown: with --fast-path the real agent serves the demo's chain (HTTP/1.1
// hello → world, gRPC world → emoji) with every answer intact, and its apps'
// answers to the proxy on the inbound legs went through the sk_msg fast path.
func TestFastPathE2E(t *testing.T) {
	// No trace backend: spans are dropped, the data path is what is tested.
	env := up(t, "http://127.0.0.1:9", "--fast-path")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := regexp.MustCompile(`^hello world (🌍|🌎|🌏|✨|🚀|🛰️)\n$`)
	for i := range 20 {
		out, err := env.Request(ctx)
		if err != nil || !want.MatchString(out) {
			t.Fatalf("request %d: %q, %v", i, out, err)
		}
	}
	metrics := adminMetrics(t, env.AdminSocket)
	// Three inbound legs (hello, world, emoji) answer each request.
	if n := metricValue(metrics, `hoptrace_fastpath_sends_total{path="redirected"}`); n < 3*20 {
		t.Errorf("fast path redirected %v app sends, want at least %d", n, 3*20)
	}
	if n := metricValue(metrics, "hoptrace_fastpath_redirected_bytes_total"); n == 0 {
		t.Error("fast path redirected no bytes")
	}
}
