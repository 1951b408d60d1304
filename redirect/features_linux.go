package redirect

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// ErrUnsupportedKernel means the kernel lacks something the redirect programs need.
// The error text names the missing feature.
var ErrUnsupportedKernel = errors.New("kernel lacks a feature hoptrace needs")

// Requirement is one kernel feature the redirect layer needs, probed for real.
type Requirement struct {
	Name  string       // e.g. "program type sk_lookup"
	Fix   string       // what a user can do about it
	Probe func() error // nil when present
}

const fixKernel = "needs Linux 5.15 or newer built with CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF and CONFIG_NET"

// Requirements lists every program type, map type, helper and socket option the
// redirect programs use, in the order they should be reported.
func Requirements() []Requirement {
	prog := func(name string, pt ebpf.ProgramType) Requirement {
		return Requirement{Name: "program type " + name, Fix: fixKernel, Probe: func() error { return features.HaveProgramType(pt) }}
	}
	mp := func(name string, mt ebpf.MapType) Requirement {
		return Requirement{Name: "map type " + name, Fix: fixKernel, Probe: func() error { return features.HaveMapType(mt) }}
	}
	helper := func(progName string, pt ebpf.ProgramType, fn asm.BuiltinFunc) Requirement {
		return Requirement{
			Name:  fmt.Sprintf("helper %s in %s", helperName(fn), progName),
			Fix:   fixKernel,
			Probe: func() error { return features.HaveProgramHelper(pt, fn) },
		}
	}
	return []Requirement{
		prog("cgroup_sock_addr (connect4/connect6)", ebpf.CGroupSockAddr),
		prog("sock_ops", ebpf.SockOps),
		prog("sk_lookup", ebpf.SkLookup),
		mp("lru_hash", ebpf.LRUHash),
		mp("lpm_trie", ebpf.LPMTrie),
		mp("sockhash", ebpf.SockHash),
		mp("ringbuf", ebpf.RingBuf),
		mp("percpu_array", ebpf.PerCPUArray),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnGetNetnsCookie),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnGetSocketCookie),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnSkLookupTcp),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnRingbufReserve),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnGetCurrentComm),
		helper("sock_ops", ebpf.SockOps, asm.FnGetNetnsCookie),
		helper("sock_ops", ebpf.SockOps, asm.FnGetSocketCookie),
		helper("sk_lookup", ebpf.SkLookup, asm.FnSkAssign),
		helper("sk_lookup", ebpf.SkLookup, asm.FnRingbufReserve),
		{Name: "socket option SO_NETNS_COOKIE", Fix: "needs Linux 5.14 or newer", Probe: probeNetnsCookie},
	}
}

// Supported probes every requirement and returns an error wrapping
// ErrUnsupportedKernel that names each missing one, or nil.
func Supported() error {
	return checkRequirements(Requirements())
}

func checkRequirements(reqs []Requirement) error {
	var missing []error
	for _, r := range reqs {
		if err := r.Probe(); err != nil {
			missing = append(missing, fmt.Errorf("%s: %w", r.Name, err))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnsupportedKernel, errors.Join(missing...))
}

func probeNetnsCookie() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("create socket: %w", err)
	}
	defer unix.Close(fd)
	_, err = netnsCookie(fd)
	return err
}

// VerifyPrograms loads hoptrace's programs and maps into the kernel without
// pinning or attaching anything, and unloads them: the strongest check that this
// kernel's verifier accepts them.
func VerifyPrograms() error {
	spec, err := loadSpec()
	if err != nil {
		return err
	}
	var objs objects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return fmt.Errorf("load BPF programs: %w", err)
	}
	return errors.Join(objs.RedirectPrograms.Close(), objs.RedirectMaps.Close())
}

// helperName turns asm.FnGetNetnsCookie into the kernel's name, bpf_get_netns_cookie.
func helperName(fn asm.BuiltinFunc) string {
	s := strings.TrimPrefix(fn.String(), "Fn")
	var b strings.Builder
	b.WriteString("bpf")
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('_')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
