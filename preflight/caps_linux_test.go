package preflight

import "testing"

// Shown: the DaemonSet's agent (CAP_SYS_ADMIN and CAP_SYS_PTRACE only, which
// the kernel accepts for everything BPF needs) passes the capability checks;
// an agent lacking setns or ptrace rights does not.
func TestCapabilityResults(t *testing.T) {
	const sysPtrace, netAdmin, bpf = 19, 12, 39
	missing := func(eff uint64) []string {
		var out []string
		for _, r := range capabilityResults(eff) {
			if r.Status == Missing {
				out = append(out, r.Name)
			}
		}
		return out
	}
	if m := missing(1<<capSysAdmin | 1<<sysPtrace); len(m) != 0 {
		t.Errorf("SYS_ADMIN + SYS_PTRACE: missing %v, want none", m)
	}
	if m := missing(1<<bpf | 1<<netAdmin); len(m) != 2 || m[0] != "capability CAP_SYS_ADMIN" || m[1] != "capability CAP_SYS_PTRACE" {
		t.Errorf("BPF + NET_ADMIN: missing %v, want CAP_SYS_ADMIN and CAP_SYS_PTRACE", m)
	}
	if m := missing(1<<bpf | 1<<netAdmin | 1<<capSysAdmin | 1<<sysPtrace); len(m) != 0 {
		t.Errorf("all four: missing %v", m)
	}
}
