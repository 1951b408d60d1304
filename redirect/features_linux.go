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
// redirect programs need, in the order they should be reported. The optional
// transparency hooks are not among them (see Transparency).
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
		mp("sk_storage", ebpf.SkStorage),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnGetNetnsCookie),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnGetSocketCookie),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnSkLookupTcp),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnRingbufReserve),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnGetCurrentComm),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnSkStorageGet),
		helper("cgroup_sock_addr", ebpf.CGroupSockAddr, asm.FnSkStorageDelete),
		helper("sock_ops", ebpf.SockOps, asm.FnGetNetnsCookie),
		helper("sock_ops", ebpf.SockOps, asm.FnSkStorageGet),
		helper("sk_lookup", ebpf.SkLookup, asm.FnSkAssign),
		helper("sk_lookup", ebpf.SkLookup, asm.FnRingbufReserve),
		{Name: "socket option SO_NETNS_COOKIE", Fix: "needs Linux 5.14 or newer", Probe: probeNetnsCookie},
	}
}

// Transparency is the one optional feature: the cgroup getpeername/getsockname
// hooks (Linux 5.8) through which a redirected socket reports its original
// destination to the app. Without them capture works, but apps see the outbound
// listener as their peer.
func Transparency() Requirement {
	return Requirement{
		Name:  "cgroup getpeername/getsockname hooks (apps see their original destination)",
		Fix:   "needs Linux 5.8 or newer; capture works without, but apps see 127.0.0.1:15001 as their peer",
		Probe: probeSockNameHooks,
	}
}

// TransparencySupported reports whether the kernel has the hooks Transparency
// names: nil, or an error wrapping ebpf.ErrNotSupported.
func TransparencySupported() error { return probeSockNameHooks() }

// probeSockNameHooks loads a minimal program for each hook: a kernel that does
// not know an attach type refuses the load with EINVAL. The four hooks came
// together, but each is probed, so a missing one can never fail a pod's Attach.
func probeSockNameHooks() error {
	for _, at := range []ebpf.AttachType{
		ebpf.AttachCgroupInet4GetPeername, ebpf.AttachCgroupInet6GetPeername,
		ebpf.AttachCgroupInet4GetSockname, ebpf.AttachCgroupInet6GetSockname,
	} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:         ebpf.CGroupSockAddr,
			AttachType:   at,
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
			License:      "GPL",
		})
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("attach type %s: %w", at, ebpf.ErrNotSupported)
		}
		if err != nil {
			return fmt.Errorf("probe attach type %s: %w", at, err)
		}
		prog.Close()
	}
	return nil
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
	if err := loadObjects(spec, &objs, TransparencySupported() == nil, nil); err != nil {
		return fmt.Errorf("load BPF programs: %w", err)
	}
	return errors.Join(objs.programs.Close(), objs.RedirectMaps.Close())
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
