package redirect

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/hoptrace/hoptrace/bpf"
)

// Redirector owns the node's redirect programs and maps and the pods attached to them.
type Redirector struct {
	cfg     Config
	mapsDir string
	podsDir string

	progs programs
	maps  bpf.RedirectMaps
	// transparent: the kernel has the getpeername/getsockname hooks, so redirected
	// sockets report their original destination to the app.
	transparent bool
	orig        *origTable // original destinations for the outbound resolvers
	fast        *fastPath  // nil: the fast path is off
	fastErr     error      // why it is off although asked for

	mu       sync.Mutex
	pods     map[string]*Attachment
	byCookie map[uint64]string // netns cookie → pod ID, for events
	closed   bool
}

// objects is what Open loads: the programs and maps, not the .bss that only keeps
// types alive for bpf2go.
type objects struct {
	programs
	bpf.RedirectMaps
}

// programs are the redirect programs. The transparency ones are loaded only where
// the kernel has their hooks (Linux 5.8); capture works without them.
type programs struct {
	capturePrograms
	transparencyPrograms // nil fields without the hooks
}

type capturePrograms struct {
	Connect4 *ebpf.Program `ebpf:"hoptrace_connect4"`
	Connect6 *ebpf.Program `ebpf:"hoptrace_connect6"`
	Sockops  *ebpf.Program `ebpf:"hoptrace_sockops"`
	SkLookup *ebpf.Program `ebpf:"hoptrace_sk_lookup"`
}

type transparencyPrograms struct {
	Getpeername4 *ebpf.Program `ebpf:"hoptrace_getpeername4"`
	Getpeername6 *ebpf.Program `ebpf:"hoptrace_getpeername6"`
	Getsockname4 *ebpf.Program `ebpf:"hoptrace_getsockname4"`
	Getsockname6 *ebpf.Program `ebpf:"hoptrace_getsockname6"`
}

func (p *programs) Close() error {
	var errs []error
	for _, prog := range []*ebpf.Program{p.Connect4, p.Connect6, p.Sockops, p.SkLookup,
		p.Getpeername4, p.Getpeername6, p.Getsockname4, p.Getsockname6} {
		if prog != nil {
			errs = append(errs, prog.Close())
		}
	}
	return errors.Join(errs...)
}

// loadObjects loads the maps and programs of spec into objs, the transparency
// programs only if transparent. LoadAndAssign loads only what it is given fields
// for, so a kernel without the getpeername hooks never sees those programs.
func loadObjects(spec *ebpf.CollectionSpec, objs *objects, transparent bool, opts *ebpf.CollectionOptions) error {
	if transparent {
		return spec.LoadAndAssign(&struct {
			Maps         *bpf.RedirectMaps
			Capture      *capturePrograms
			Transparency *transparencyPrograms
		}{&objs.RedirectMaps, &objs.capturePrograms, &objs.transparencyPrograms}, opts)
	}
	return spec.LoadAndAssign(&struct {
		Maps    *bpf.RedirectMaps
		Capture *capturePrograms
	}{&objs.RedirectMaps, &objs.capturePrograms}, opts)
}

// Open loads the redirect programs, adopting maps already pinned under cfg.PinDir
// by an earlier agent so that its pods keep their state.
func Open(cfg Config) (*Redirector, error) {
	cfg = cfg.withDefaults()
	if err := Supported(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	if err := ensurePinDir(cfg.PinDir); err != nil {
		return nil, err
	}
	r := &Redirector{
		cfg:         cfg,
		mapsDir:     filepath.Join(cfg.PinDir, "maps"),
		podsDir:     filepath.Join(cfg.PinDir, "pods"),
		pods:        map[string]*Attachment{},
		byCookie:    map[uint64]string{},
		transparent: !cfg.withoutTransparency && TransparencySupported() == nil,
	}
	for _, d := range []string{r.mapsDir, r.podsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create pin dir: %w", err)
		}
	}
	objs, err := r.load()
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// Pins from an agent version with other map layouts: start afresh. Pods of
		// the old agent fail open until they are attached again.
		if rerr := os.RemoveAll(r.mapsDir); rerr != nil {
			return nil, fmt.Errorf("replace incompatible pinned maps: %w", rerr)
		}
		if err := os.MkdirAll(r.mapsDir, 0o700); err != nil {
			return nil, fmt.Errorf("create pin dir: %w", err)
		}
		objs, err = r.load()
	}
	if err != nil {
		r.removeEmptyPinDirs()
		return nil, err
	}
	r.progs, r.maps = objs.programs, objs.RedirectMaps
	if r.orig, err = newOrigTable(r.maps.OrigRing, r.maps.OrigByPort); err != nil {
		objs.programs.Close()
		objs.RedirectMaps.Close()
		return nil, fmt.Errorf("original destinations: %w", err)
	}
	// Adopted maps keep what the last agent set: set it again.
	var all uint32
	if cfg.AllEvents {
		all = 1
	}
	if err := r.maps.Settings.Put(uint32(bpf.RedirectSettingSETTING_ALL_EVENTS), all); err != nil {
		objs.programs.Close()
		objs.RedirectMaps.Close()
		r.orig.close()
		return nil, fmt.Errorf("configure BPF programs: %w", err)
	}
	r.removeRetiredMaps()
	if cfg.FastPath {
		r.fast, r.fastErr = openFastPath(r.mapsDir, cfg.breakFastPath)
	} else {
		// An earlier agent's fast path: its programs keep what they use alive.
		removeFastPins(r.mapsDir)
	}
	return r, nil
}

// retiredMaps are maps that earlier agent versions pinned and this one no longer
// uses: orig_by_cookie held the original destination by socket cookie before it
// moved into socket-local storage (redirected_socks).
var retiredMaps = []string{"orig_by_cookie"}

// removeRetiredMaps unpins them. A program of the earlier agent that still uses
// one keeps it alive until Attach moves that pod's links to this agent's programs.
func (r *Redirector) removeRetiredMaps() {
	for _, name := range retiredMaps {
		_ = os.Remove(filepath.Join(r.mapsDir, name))
	}
}

// Transparent reports whether redirected sockets report their original
// destination to the app (getpeername) and the pod's address as their own
// (getsockname). Without the kernel's hooks for it (before Linux 5.8) capture works,
// but apps see the outbound listener as their peer.
func (r *Redirector) Transparent() bool { return r.transparent }

// loadSpec parses the embedded object, minus the .bss that only keeps types
// alive for bpf2go.
func loadSpec() (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadRedirect()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	delete(spec.Maps, ".bss")
	spec.Variables = nil
	return spec, nil
}

func (r *Redirector) load() (*objects, error) {
	spec, err := loadSpec()
	if err != nil {
		return nil, err
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinByName
	}
	if r.cfg.origRingSize != 0 {
		spec.Maps[bpf.RedirectMapOrigRing].MaxEntries = r.cfg.origRingSize
	}
	var objs objects
	err = loadObjects(spec, &objs, r.transparent, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: r.mapsDir}})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load BPF programs: kernel verifier rejected them (run 'hoptrace check'): %w", err)
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	return &objs, nil
}

// PinDir returns the bpffs directory holding this Redirector's pins.
func (r *Redirector) PinDir() string { return r.cfg.PinDir }

// Close detaches every pod this process attached or found pinned and removes all
// programs, links, maps and pins: nothing of hoptrace stays in the kernel.
func (r *Redirector) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for id, a := range r.pods {
		errs = append(errs, r.detachLocked(a, true))
		delete(r.pods, id)
	}
	// Pods pinned by an earlier agent and never re-attached.
	ids, err := r.pinnedLocked()
	errs = append(errs, err)
	for _, id := range ids {
		errs = append(errs, r.removePinnedLocked(id))
	}
	errs = append(errs, r.orig.close(), r.maps.Close(), r.progs.Close())
	if r.fast != nil {
		errs = append(errs, r.fast.close())
	}
	// The maps dir holds only hoptrace's map pins; unlinking them frees the maps.
	if err := os.RemoveAll(r.mapsDir); err != nil {
		errs = append(errs, fmt.Errorf("unpin maps: %w", err))
	}
	r.removeEmptyPinDirs()
	return errors.Join(errs...)
}

// Release closes this process's file descriptors but leaves links, maps and pins in
// the kernel, so that a later agent adopts them (--keep-redirect-on-exit). The
// pods' listeners close with it, so their traffic fails open in the meantime.
func (r *Redirector) Release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for id, a := range r.pods {
		errs = append(errs, a.closeLocal())
		delete(r.pods, id)
	}
	errs = append(errs, r.orig.close(), r.maps.Close(), r.progs.Close())
	if r.fast != nil {
		errs = append(errs, r.fast.close())
	}
	return errors.Join(errs...)
}

func (r *Redirector) removeEmptyPinDirs() {
	// os.Remove only removes empty directories: pins of others stay untouched.
	_ = os.Remove(r.podsDir)
	_ = os.Remove(r.mapsDir)
	_ = os.Remove(r.cfg.PinDir)
}
