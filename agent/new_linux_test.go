package agent

import (
	"errors"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/pods"
	"github.com/hoptrace/hoptrace/proxy"
)

// A configuration no proxy could run with is refused by New, before anything
// is loaded or attached, with the bad value named.
func TestNewRejectsBadSpanOptions(t *testing.T) {
	base := Config{Sources: []pods.Source{&pods.FileSource{Path: "/nonexistent/pods.yaml"}}, SampleRate: 1}

	cfg := base
	cfg.CaptureHeaders = []string{"x-request-id", "x tenant"}
	if _, err := New(cfg); !errors.Is(err, proxy.ErrHeaderName) || !strings.Contains(err.Error(), `"x tenant"`) {
		t.Errorf("capture header with a space: %v, want proxy.ErrHeaderName naming it", err)
	}
	cfg = base
	cfg.Routes = []string{"users/{id}"}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "routes") {
		t.Errorf("route without a leading slash: %v, want an error about routes", err)
	}
}
