package preflight

import (
	"testing"

	"github.com/hoptrace/hoptrace/internal/testenv"
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
	}
	for _, want := range []string{"kernel version", "bpf() syscall", "cgroup v2 mount", "program type sk_lookup", "hoptrace BPF programs load (verifier)", "capability CAP_BPF"} {
		if !names[want] {
			t.Errorf("no check named %q", want)
		}
	}
}
