package demo

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/jaegertest"
)

// Issue 13, as `make demo` shows it: client → legacy-a → legacy-b → world →
// emoji, where legacy-a and legacy-b (Python, thread per request) forward no
// trace headers. With --infer-context and the pods' opt-in, the whole chain
// is one trace, every hop parented on the one before, and the spans of the
// hops whose context was inferred say so.
func TestDemoHeaderlessChainIsOneTrace(t *testing.T) {
	j := jaegertest.Start(t)
	env := up(t, "http://"+j.OTLPGRPCAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const requests = 3
	for i := range requests {
		cmd := exec.CommandContext(ctx, "curl", "-s", "-f", "--max-time", "10", env.LegacyURL())
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := env.Pods["client"].Run(cmd); err != nil || !strings.HasPrefix(out.String(), "legacy-a -> legacy-b -> ") {
			t.Fatalf("request %d: %q, %v", i, out.String(), err)
		}
	}
	// client's outbound legs (2), legacy-a, legacy-b and world both ways (3 × 4),
	// emoji's inbound legs (2).
	// Fewer spans per trace: the hops were not linked.
	const spansPerTrace = 16
	for _, tr := range completeTraces(t, j, "client", requests, spansPerTrace) {
		services := map[string]int{}
		inferred := map[string]int{}
		ids := map[string]bool{}
		for _, s := range tr.Spans {
			ids[s.SpanID] = true
		}
		for _, s := range tr.Spans {
			svc := tr.Process(s).ServiceName
			services[svc]++
			if p := s.ParentID(); p != "" && !ids[p] {
				t.Errorf("trace %s: span of %s has a parent outside the trace", tr.TraceID, svc)
			}
			if v, _ := s.Tag("hoptrace.context.inferred"); v == "true" {
				inferred[svc]++
			}
		}
		// world and emoji each appear as server (2 inbound legs) and, but for
		// emoji, as client (2 outbound legs); client only calls out.
		want := map[string]int{"client": 2, "legacy-a": 4, "legacy-b": 4, "world": 4, "emoji": 2}
		for svc, n := range want {
			if services[svc] != n {
				t.Errorf("trace %s: %d spans of %s, want %d (%v)", tr.TraceID, services[svc], svc, n, services)
			}
		}
		// The outbound legs of the apps that forward nothing carry an
		// inferred context; nothing else does.
		if inferred["legacy-a"] != 2 || inferred["legacy-b"] != 2 || len(inferred) != 2 {
			t.Errorf("trace %s: inferred spans %v, want the two outbound legs of legacy-a and of legacy-b", tr.TraceID, inferred)
		}
	}
	series := `hoptrace_infer_requests_total{result="linked"}`
	if v := metricValue(adminMetrics(t, env.AdminSocket), series); v != 2*requests {
		t.Errorf("%s = %v, want %d (legacy-a's and legacy-b's calls)", series, v, 2*requests)
	}
}
