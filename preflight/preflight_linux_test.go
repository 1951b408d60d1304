package preflight

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/hoptrace/hoptrace/cgroup2"
	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/redirect"
)

// On this project's machines every required item is present: Run must say so,
// having probed each for real.
func TestRunOnThisHost(t *testing.T) {
	testenv.RequirePrivileged(t)
	results := Run()
	names := map[string]bool{}
	for _, r := range results {
		names[r.Name] = true
		if r.Status == Missing {
			t.Errorf("%s: missing (%s)", r.Name, r.Detail)
		}
		if (r.Name == redirect.Transparency().Name || r.Name == InferRequirement().Name) && r.Status != OK {
			t.Errorf("%s: %s, want ok on Linux 6.18 (%s)", r.Name, r.Status, r.Detail)
		}
	}
	for _, want := range []string{"kernel version", "bpf() syscall", "cgroup v2 mount", "program type sk_lookup", "hoptrace BPF programs load (verifier)", "capability CAP_BPF", "map type sk_storage", redirect.Transparency().Name, InferRequirement().Name} {
		if !names[want] {
			t.Errorf("no check named %q", want)
		}
	}
}

// An absent optional feature is one warning line that says what still works.
func TestOptionalFeatureIsOneWarning(t *testing.T) {
	req := redirect.Transparency()
	req.Probe = func() error { return fmt.Errorf("attach type CgroupInet4GetPeername: %w", ebpf.ErrNotSupported) }
	r := optional(req)
	if r.Status != Warning {
		t.Fatalf("status %s, want warn", r.Status)
	}
	var b strings.Builder
	if !Report(&b, []Result{r}) {
		t.Error("an optional feature must not fail the check")
	}
	line := b.String()
	if strings.Count(line, "\n") != 1 || !strings.Contains(line, "not supported by this kernel") || !strings.Contains(line, "capture works") {
		t.Errorf("report: %q", line)
	}
}

// The Service hand-off line says what it says on the cgroup the check runs in:
// in the hierarchy's root (a root shell on a host) a warning naming it, in a
// cgroup of its own (inside the agent's container) ok.
func TestServiceHandoffLine(t *testing.T) {
	testenv.RequirePrivileged(t)
	r := optional(ServiceHandoffRequirement())
	_, err := cgroup2.Self()
	switch {
	case errors.Is(err, cgroup2.ErrRootCgroup):
		if r.Status != Warning || !strings.Contains(r.Detail, "root cgroup") || !strings.Contains(r.Fix, "pod addresses are handed off either way") {
			t.Errorf("in the root cgroup: %+v, want a warning that names it", r)
		}
	case err == nil:
		if r.Status != OK {
			t.Errorf("in the cgroup %+v, want ok", r)
		}
	default:
		t.Fatalf("own cgroup: %v", err)
	}
	testenv.InOwnCgroup(t)
	if r := optional(ServiceHandoffRequirement()); r.Status != OK {
		t.Errorf("in a cgroup of its own: %+v, want ok", r)
	}
}
