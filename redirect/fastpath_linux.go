package redirect

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/bpf"
)

// ErrFastPathOff means the sk_msg fast path is not in use: not asked for, or it
// could not be loaded (the wrapped error says why). Capture works either way.
var ErrFastPathOff = errors.New("sk_msg fast path off")

// fastPath is the node's sk_msg fast path (bpf/fastpath.c): an app's bytes to
// the agent's end of an in-pod loopback leg skip the loopback TCP stack.
type fastPath struct {
	progs fastPrograms
	maps  bpf.FastpathMaps
	// peerErrors counts agent sockets that could not enter fast_peers; their
	// connections simply stay on TCP.
	peerErrors atomic.Uint64
	// peersLate counts agent sockets left out because the app had already
	// sent over TCP (its sends stay there, see fastpath.c).
	peersLate atomic.Uint64
}

type fastPrograms struct {
	Sockops *ebpf.Program `ebpf:"hoptrace_fast_sockops"`
	Msg     *ebpf.Program `ebpf:"hoptrace_fast_msg"`
}

// fastMaps are the fast path's pinned map names, to drop when their layout
// changed or the fast path was switched off.
var fastMaps = []string{"fast_pods", "fast_apps", "fast_peers", "fast_counters"}

// openFastPath loads the fast path, adopting its pinned maps, and attaches the
// sk_msg program to fast_apps. An agent restarted with the fast path on adopts
// the sockets an earlier one left there.
func openFastPath(mapsDir string, broken bool) (*fastPath, error) {
	fp, err := loadFastPath(mapsDir, broken)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		removeFastPins(mapsDir)
		fp, err = loadFastPath(mapsDir, broken)
	}
	if err != nil {
		return nil, err
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  fp.maps.FastApps.FD(),
		Program: fp.progs.Msg,
		Attach:  ebpf.AttachSkMsgVerdict,
	})
	if err != nil {
		fp.close()
		removeFastPins(mapsDir)
		return nil, fmt.Errorf("attach sk_msg program: %w", err)
	}
	return fp, nil
}

func loadFastPath(mapsDir string, broken bool) (*fastPath, error) {
	spec, err := bpf.LoadFastpath()
	if err != nil {
		return nil, fmt.Errorf("parse embedded fast path object: %w", err)
	}
	if broken {
		// A program the verifier must refuse: it returns without setting r0.
		prog := spec.Programs["hoptrace_fast_msg"]
		prog.Instructions = prog.Instructions[len(prog.Instructions)-1:]
	}
	delete(spec.Maps, ".bss")
	spec.Variables = nil
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinByName
	}
	fp := &fastPath{}
	err = spec.LoadAndAssign(&struct {
		Maps  *bpf.FastpathMaps
		Progs *fastPrograms
	}{&fp.maps, &fp.progs}, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: mapsDir}})
	if err != nil {
		// The maps are pinned before the programs load: a refused program
		// must not leave them behind for nothing.
		removeFastPins(mapsDir)
		return nil, fmt.Errorf("load fast path programs: %w", err)
	}
	return fp, nil
}

func removeFastPins(mapsDir string) {
	for _, name := range fastMaps {
		_ = os.Remove(filepath.Join(mapsDir, name))
	}
}

func (fp *fastPath) close() error {
	var errs []error
	for _, p := range []*ebpf.Program{fp.progs.Sockops, fp.progs.Msg} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	errs = append(errs, fp.maps.Close())
	return errors.Join(errs...)
}

// FastPath reports whether the sk_msg fast path is in use: nil if it is, else an
// error wrapping ErrFastPathOff that says why not.
func (r *Redirector) FastPath() error {
	if r.fast != nil {
		return nil
	}
	if r.fastErr != nil {
		return fmt.Errorf("%w: %w", ErrFastPathOff, r.fastErr)
	}
	return fmt.Errorf("%w: not enabled", ErrFastPathOff)
}

// FastPathCounters are the fast path's running totals, summed over CPUs.
type FastPathCounters struct {
	AppSockets       uint64 // app sockets of in-pod legs put into the fast path
	AppSocketsFailed uint64 // app sockets that could not be (they stay on TCP)
	Redirected       uint64 // app sends moved straight to the agent's socket
	RedirectedBytes  uint64
	PassNoPeer       uint64 // app sends on TCP: the agent's end is not in the fast path
	PassTCPBefore    uint64 // app sends on TCP: the socket sent over TCP before (ordering)
	PeerErrors       uint64 // agent sockets that could not enter the fast path
	PeersLate        uint64 // agent sockets left out: the app had sent over TCP before accept
}

// FastPathCounters reads the fast path's counters; ErrFastPathOff if it is off.
func (r *Redirector) FastPathCounters() (FastPathCounters, error) {
	var c FastPathCounters
	if r.fast == nil {
		return c, r.FastPath()
	}
	for idx, dst := range map[bpf.FastpathFastCounter]*uint64{
		bpf.FastpathFastCounterFAST_APP_SOCKETS:        &c.AppSockets,
		bpf.FastpathFastCounterFAST_APP_SOCKETS_FAILED: &c.AppSocketsFailed,
		bpf.FastpathFastCounterFAST_REDIRECTED:         &c.Redirected,
		bpf.FastpathFastCounterFAST_REDIRECTED_BYTES:   &c.RedirectedBytes,
		bpf.FastpathFastCounterFAST_PASS_NO_PEER:       &c.PassNoPeer,
		bpf.FastpathFastCounterFAST_PASS_TCP_BEFORE:    &c.PassTCPBefore,
	} {
		var per []uint64
		if err := r.fast.maps.FastCounters.Lookup(idx, &per); err != nil {
			return FastPathCounters{}, fmt.Errorf("read fast path counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	c.PeerErrors = r.fast.peerErrors.Load()
	c.PeersLate = r.fast.peersLate.Load()
	return c, nil
}

// writeFastPod switches the fast path on for a pod's new connections.
func (r *Redirector) writeFastPod(a *Attachment) error {
	if r.fast == nil {
		return nil
	}
	v := bpf.FastpathFastPod{OutboundPort: r.cfg.OutboundPort}
	if err := r.fast.maps.FastPods.Update(&a.NetnsCookie, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write fast path settings: %w", err)
	}
	return nil
}

func (r *Redirector) deleteFastPod(cookie uint64) {
	if r.fast != nil {
		_ = r.fast.maps.FastPods.Delete(&cookie)
	}
}

// addPeer puts the agent's end of an in-pod leg into fast_peers, so the app's
// sends on the other end go straight to it. Failing that, the connection stays
// on TCP, and the failure is counted.
func (a *Attachment) addPeer(c net.Conn) {
	fp := a.r.fast
	if fp == nil {
		return
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	key, ok := fastKey(a.NetnsCookie, c.LocalAddr(), c.RemoteAddr())
	if !ok {
		fp.peerErrors.Add(1)
		return
	}
	late := false
	err := socketFD(sc, func(fd int) error {
		// Bytes already queued: the app sent over TCP before this socket
		// could join, so its sends stay on TCP, and joining would only put
		// this socket's reads through the sockmap's receive path for nothing.
		if inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err == nil && inq > 0 {
			late = true
			return nil
		}
		return fp.maps.FastPeers.Update(&key, uint64(fd), ebpf.UpdateAny)
	})
	switch {
	case err != nil:
		fp.peerErrors.Add(1)
	case late:
		fp.peersLate.Add(1)
	}
}

// fastKey is a socket's key in the fast path's maps, from its own side.
func fastKey(cookie uint64, local, remote net.Addr) (bpf.FastpathFastKey, bool) {
	la, ok1 := local.(*net.TCPAddr)
	ra, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return bpf.FastpathFastKey{}, false
	}
	l, r := la.AddrPort(), ra.AddrPort()
	k := bpf.FastpathFastKey{NetnsCookie: cookie, LocalPort: l.Port(), RemotePort: r.Port()}
	k.Local.Ip = toBPFAddr(l.Addr()).Ip
	k.Remote.Ip = toBPFAddr(r.Addr()).Ip
	return k, true
}
