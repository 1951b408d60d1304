package preflight

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/cgroup2"
	"github.com/hoptrace/hoptrace/connid"
	"github.com/hoptrace/hoptrace/infer"
	"github.com/hoptrace/hoptrace/redirect"
)

// MinKernel is the oldest kernel with every feature the redirect programs use
// (bpf_get_netns_cookie in sock_ops arrived in 5.15).
var MinKernel = [2]int{5, 15}

// Run performs every check on this host.
func Run() []Result {
	var rs []Result
	rs = append(rs, kernelVersion())
	rs = append(rs, capabilities()...)
	rs = append(rs, bpfSyscall())
	rs = append(rs, btf())
	rs = append(rs, cgroupV2())
	rs = append(rs, bpffs())
	for _, req := range redirect.Requirements() {
		r := Result{Name: req.Name, Status: OK}
		if err := req.Probe(); err != nil {
			r.Status, r.Detail, r.Fix = Missing, errText(err), req.Fix
		}
		rs = append(rs, r)
	}
	rs = append(rs, optional(redirect.Transparency()))
	rs = append(rs, optional(InferRequirement()))
	rs = append(rs, optional(ServiceHandoffRequirement()))
	r := Result{Name: "hoptrace BPF programs load (verifier)", Status: OK}
	if err := redirect.VerifyPrograms(); err != nil {
		r.Status, r.Detail, r.Fix = Missing, errText(err), "see the items above; report the error if they are all ok"
	}
	return append(rs, r)
}

// InferRequirement is context inference (agent --infer-context), probed by
// loading and attaching its programs: optional, only pods that ask need it.
func InferRequirement() redirect.Requirement {
	return redirect.Requirement{
		Name: "context inference (--infer-context): tracepoints sock_recv_length, tcp_sendmsg_locked",
		Probe: func() error {
			if err := infer.Supported(); err != nil {
				if errors.Is(err, infer.ErrNotSupported) {
					return fmt.Errorf("%w: %w", ebpf.ErrNotSupported, err)
				}
				return err
			}
			return nil
		},
		Fix: "a kernel with BTF and both tracepoints (sock_recv_length came in 6.4, tcp_sendmsg_locked later); capture and tracing work without it, pods annotated hoptrace.io/context: infer are traced as if they forwarded headers",
	}
}

// ServiceHandoffRequirement is the local hand-off of hops through a
// Service's virtual IP (package connid), probed by attaching its program to
// this process's cgroup for a moment: run inside the agent's container
// (kubectl exec), that is the agent's. Optional: hops to pod addresses are
// handed off without it, and the others go over TCP.
func ServiceHandoffRequirement() redirect.Requirement {
	return redirect.Requirement{
		Name: "hops through Service IPs handed off in memory (--local-handoff): sockops on the agent's own cgroup",
		Probe: func() error {
			dir, err := cgroup2.Self()
			if err != nil {
				return err
			}
			t, err := connid.Open(dir)
			if err != nil {
				if errors.Is(err, connid.ErrNotSupported) {
					return fmt.Errorf("%w: %w", ebpf.ErrNotSupported, err)
				}
				return err
			}
			return t.Close()
		},
		Fix: "run the agent in a cgroup of its own (a DaemonSet's container is one) on a kernel with sockops and socket storage; without it such hops go over TCP between the agent's proxies, hops to pod addresses are handed off either way",
	}
}

// optional turns a feature hoptrace can do without into one line: a warning, not
// a failure, when it is absent.
func optional(req redirect.Requirement) Result {
	r := Result{Name: req.Name, Status: OK}
	if err := req.Probe(); err != nil {
		r.Status, r.Detail, r.Fix = Warning, errText(err), req.Fix
	}
	return r
}

func errText(err error) string {
	if errors.Is(err, ebpf.ErrNotSupported) {
		return "not supported by this kernel"
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i > 0 {
		s = s[:i]
	}
	return s
}

func kernelVersion() Result {
	r := Result{Name: "kernel version"}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		r.Status, r.Detail = Missing, err.Error()
		return r
	}
	release := unix.ByteSliceToString(u.Release[:])
	r.Detail = release
	major, minor := parseRelease(release)
	if major > MinKernel[0] || (major == MinKernel[0] && minor >= MinKernel[1]) {
		r.Status = OK
		return r
	}
	r.Status = Missing
	r.Fix = fmt.Sprintf("hoptrace needs Linux %d.%d or newer", MinKernel[0], MinKernel[1])
	return r
}

func parseRelease(s string) (major, minor int) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	major, _ = strconv.Atoi(parts[0])
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits >= 0 {
		parts[1] = parts[1][:digits]
	}
	minor, _ = strconv.Atoi(parts[1])
	return major, minor
}

// capability bits from linux/capability.h.
const capSysAdmin = 21

var neededCaps = []struct {
	bit  uint
	name string
	why  string
	// bySysAdmin: the kernel accepts CAP_SYS_ADMIN in its place
	// (bpf_capable, bpf_net_capable), so an agent holding SYS_ADMIN, as the
	// DaemonSet's does, needs no more.
	bySysAdmin bool
}{
	{capSysAdmin, "CAP_SYS_ADMIN", "enter pod network namespaces, mount bpffs", false},
	{12, "CAP_NET_ADMIN", "attach sk_lookup and cgroup socket programs", true},
	{39, "CAP_BPF", "load BPF programs and maps", true},
	{19, "CAP_SYS_PTRACE", "open other processes' network namespaces", false},
}

func capabilities() []Result {
	eff, err := effectiveCaps()
	if err != nil {
		return []Result{{Name: "capabilities", Status: Missing, Detail: err.Error()}}
	}
	return capabilityResults(eff)
}

// capabilityResults checks an effective capability set.
func capabilityResults(eff uint64) []Result {
	var rs []Result
	for _, c := range neededCaps {
		r := Result{Name: "capability " + c.name, Status: OK, Detail: c.why}
		switch {
		case eff&(1<<c.bit) != 0:
		case c.bySysAdmin && eff&(1<<capSysAdmin) != 0:
			r.Detail += " (through CAP_SYS_ADMIN)"
		default:
			r.Status = Missing
			r.Fix = "run the agent as root, or with CAP_SYS_ADMIN and CAP_SYS_PTRACE as the DaemonSet does"
		}
		rs = append(rs, r)
	}
	return rs
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

func bpfSyscall() Result {
	r := Result{Name: "bpf() syscall", Status: OK}
	if err := features.HaveProgramType(ebpf.SocketFilter); err != nil {
		r.Status, r.Detail = Missing, errText(err)
		r.Fix = "the kernel needs CONFIG_BPF_SYSCALL and the agent CAP_BPF/CAP_SYS_ADMIN; check kernel.unprivileged_bpf_disabled is not the issue"
	}
	return r
}

func btf() Result {
	r := Result{Name: "kernel BTF (/sys/kernel/btf/vmlinux)", Status: OK}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		// hoptrace's programs use no CO-RE relocations, so BTF is only nice to have.
		r.Status, r.Detail = Warning, "absent; not required by hoptrace's programs"
		r.Fix = "a kernel with CONFIG_DEBUG_INFO_BTF=y gives better bpftool output"
	}
	return r
}

func cgroupV2() Result {
	r := Result{Name: "cgroup v2 mount"}
	mp, err := cgroup2.Mountpoint()
	if err != nil {
		r.Status, r.Detail = Missing, err.Error()
		r.Fix = "mount cgroup2 (unified or hybrid hierarchy); kubelet's cgroupfs or systemd driver both work"
		return r
	}
	r.Status, r.Detail = OK, mp
	return r
}

func bpffs() Result {
	r := Result{Name: "bpffs at /sys/fs/bpf"}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		r.Status, r.Detail = OK, "mounted"
		return r
	}
	r.Status, r.Detail = Warning, "not mounted; the agent mounts it at start"
	r.Fix = "mount -t bpf bpf /sys/fs/bpf (in Kubernetes, mount it into the DaemonSet with mountPropagation: Bidirectional)"
	return r
}
