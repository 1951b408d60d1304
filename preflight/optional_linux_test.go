package preflight

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/infer"
)

// A kernel without the inference hooks (this machine has them, so the probe
// is replaced) gets one warning line that says so and what it means, never a
// failure: capture and tracing do not need inference.
func TestInferenceMissingIsAWarning(t *testing.T) {
	req := InferRequirement()
	req.Probe = func() error {
		return fmt.Errorf("tracepoint sock_recv_length: %w", infer.ErrNotSupported)
	}
	r := optional(req)
	if r.Status != Warning {
		t.Fatalf("status %v, want a warning", r.Status)
	}
	if !strings.Contains(r.Detail, "context inference not supported") || !strings.Contains(r.Fix, "traced as if they forwarded headers") {
		t.Errorf("line %+v does not say what is missing and what it means", r)
	}
	req.Probe = func() error { return nil }
	if r := optional(req); r.Status != OK {
		t.Errorf("hooks present: %+v, want OK", r)
	}
}
