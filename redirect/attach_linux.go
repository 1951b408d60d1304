package redirect

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/bpf"
	"github.com/hoptrace/hoptrace/cgroup2"
	"github.com/hoptrace/hoptrace/netns"
)

// Attachment is one captured pod: its listeners, resolvers and dialers.
type Attachment struct {
	Pod         Pod
	NetnsCookie uint64
	// Addrs are the pod's addresses, read from its netns at attach time; inbound
	// capture applies to connections towards them.
	Addrs []netip.Addr
	// Outbound receives the pod's redirected outbound connections (127.0.0.1 and,
	// when the pod has IPv6 loopback, [::1] on the outbound port), merged from
	// OutboundListeners.
	Outbound net.Listener
	// Inbound receives connections to the pod's captured ports, merged from
	// InboundListeners.
	Inbound net.Listener

	r      *Redirector
	netns  *os.File
	outLn  *dualListener
	inLn   *dualListener
	links  []pinnedLink
	pinDir string
	fast   bool // the pod's in-pod legs use the sk_msg fast path
}

type pinnedLink struct {
	path string
	link link.Link
}

// undo collects rollback steps so a failed Attach leaves nothing behind.
type undo []func()

func (u *undo) push(f func()) { *u = append(*u, f) }
func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// Attach captures a pod: it opens the pod's listeners inside its netns, records
// its settings in the maps and links the programs to its cgroup and netns. On
// error nothing of the attempt is left behind.
func (r *Redirector) Attach(pod Pod) (_ *Attachment, err error) {
	if err := pod.validate(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, ok := r.pods[pod.ID]; ok {
		return nil, fmt.Errorf("attach %s: %w", pod.ID, ErrAlreadyAttached)
	}
	if err := cgroup2.Check(pod.CgroupDir); err != nil {
		return nil, fmt.Errorf("attach %s: %w", pod.ID, err)
	}

	var rollback undo
	defer func() {
		if err != nil {
			rollback.run()
			err = fmt.Errorf("attach %s: %w", pod.ID, err)
		}
	}()

	a := &Attachment{Pod: pod, r: r, pinDir: filepath.Join(r.podsDir, podPinName(pod.ID))}
	if a.netns, err = openNetns(pod.NetnsPath); err != nil {
		return nil, err
	}
	rollback.push(func() { a.netns.Close() })

	if err := a.openListeners(); err != nil {
		return nil, err
	}
	rollback.push(func() { a.outLn.Close(); a.inLn.Close() })

	// A pod re-created under the same ID (or re-attached after a crash) may have
	// left entries under its old netns cookie.
	if old, ok := r.lookupRecord(pod.ID); ok && old.NetnsCookie != a.NetnsCookie {
		r.deletePodEntries(old)
	}
	if err := r.writePodEntries(a); err != nil {
		r.deletePodEntries(a.record())
		return nil, err
	}
	rollback.push(func() { r.deletePodEntries(a.record()) })
	// The fast path is a bonus: a pod it cannot be set up for is captured without it.
	a.fast = r.fast != nil && r.writeFastPod(a) == nil

	if err := a.link(); err != nil {
		return nil, err
	}
	r.pods[pod.ID] = a
	r.byCookie[a.NetnsCookie] = pod.ID
	return a, nil
}

func (a *Attachment) openListeners() error {
	r := a.r
	var out4, out6, in4, in6 *net.TCPListener
	err := netns.Do(int(a.netns.Fd()), func() error {
		var err error
		if out4, err = listenLoopback(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), r.cfg.OutboundPort)); err != nil {
			return err
		}
		if in4, err = listenLoopback(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), r.cfg.InboundPort)); err != nil {
			out4.Close()
			return err
		}
		// IPv6 is optional: a pod without ::1 has no IPv6 traffic to capture.
		if l, err := listenLoopback(netip.AddrPortFrom(netip.IPv6Loopback(), r.cfg.OutboundPort)); err == nil {
			out6 = l
		}
		if out6 != nil {
			if l, err := listenLoopback(netip.AddrPortFrom(netip.IPv6Loopback(), r.cfg.InboundPort)); err == nil {
				in6 = l
			}
		}
		a.Addrs, err = podAddrs()
		return err
	})
	if err != nil {
		for _, l := range []*net.TCPListener{out4, out6, in4, in6} {
			closeIf(l)
		}
		return err
	}
	// The cookie before the accept loops start: each accepted in-pod leg is
	// keyed by it (addPeer).
	if err := socketFD(out4, func(fd int) (err error) { a.NetnsCookie, err = netnsCookie(fd); return err }); err != nil {
		for _, l := range []*net.TCPListener{out4, out6, in4, in6} {
			closeIf(l)
		}
		return err
	}
	// Connections the app makes to the outbound listener are in-pod legs; the
	// inbound listener's come from other pods.
	a.outLn, a.inLn = newDualListener(out4, out6, a.addPeer), newDualListener(in4, in6, nil)
	a.Outbound, a.Inbound = a.outLn, a.inLn
	return nil
}

// podAddrs lists the addresses of the current netns that other pods can reach.
func podAddrs() ([]netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list pod interfaces: %w", err)
	}
	var addrs []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		as, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", ifc.Name, err)
		}
		for _, x := range as {
			ipn, ok := x.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || ip.IsLinkLocalUnicast() {
				continue
			}
			addrs = append(addrs, ip.Unmap())
		}
	}
	if len(addrs) > maxPodIPs {
		addrs = addrs[:maxPodIPs]
	}
	return addrs, nil
}

const maxPodIPs = 4 // POD_MAX_IPS in redirect.c

func toBPFAddr(a netip.Addr) bpf.RedirectAddr {
	b := a.As16() // IPv4 becomes ::ffff:a.b.c.d, as the programs expect
	var out bpf.RedirectAddr
	for i := range out.Ip {
		out.Ip[i] = binary.NativeEndian.Uint32(b[i*4:])
	}
	return out
}

func fromBPFAddr(a bpf.RedirectAddr) netip.Addr {
	var b [16]byte
	for i, w := range a.Ip {
		binary.NativeEndian.PutUint32(b[i*4:], w)
	}
	return netip.AddrFrom16(b).Unmap()
}

func (a *Attachment) record() bpf.RedirectPodRecord {
	rec := bpf.RedirectPodRecord{NetnsCookie: a.NetnsCookie, Nips: uint32(len(a.Addrs))}
	for i, ip := range a.Addrs {
		rec.Ips[i] = toBPFAddr(ip)
	}
	return rec
}

func podKey(id string) bpf.RedirectPodId {
	var k bpf.RedirectPodId
	for i := 0; i < len(id) && i < len(k.Id)-1; i++ {
		k.Id[i] = int8(id[i])
	}
	return k
}

func (r *Redirector) lookupRecord(id string) (bpf.RedirectPodRecord, bool) {
	var rec bpf.RedirectPodRecord
	k := podKey(id)
	if err := r.maps.PodIndex.Lookup(&k, &rec); err != nil {
		return rec, false
	}
	return rec, true
}

func (r *Redirector) writePodEntries(a *Attachment) error {
	pod := a.Pod
	k := podKey(pod.ID)
	rec := a.record()
	// The record goes first: if the agent dies halfway, the next one can find
	// and remove whatever else was written.
	if err := r.maps.PodIndex.Update(&k, &rec, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("record pod: %w", err)
	}
	rule := func(port uint16, dir Direction, action bpf.RedirectPortAction) error {
		pk := bpf.RedirectPodPort{NetnsCookie: a.NetnsCookie, Port: port, Direction: uint8(dir)}
		if err := r.maps.PodPorts.Update(&pk, uint8(action), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write port rule %d: %w", port, err)
		}
		return nil
	}
	for _, p := range pod.InboundPorts {
		if err := rule(p, Inbound, bpf.RedirectPortActionPORT_CAPTURE); err != nil {
			return err
		}
	}
	for _, p := range pod.SkipInboundPorts {
		if err := rule(p, Inbound, bpf.RedirectPortActionPORT_SKIP); err != nil {
			return err
		}
	}
	for _, p := range pod.SkipOutboundPorts {
		if err := rule(p, Outbound, bpf.RedirectPortActionPORT_SKIP); err != nil {
			return err
		}
	}
	for _, c := range pod.SkipOutboundCIDRs {
		c = c.Masked()
		bits := c.Bits()
		if c.Addr().Is4() {
			bits += 96 // the programs match IPv4 in its IPv4-mapped IPv6 form
		}
		ck := bpf.RedirectCidrKey{Prefixlen: uint32(64 + bits), NetnsCookie: a.NetnsCookie, Ip: toBPFAddr(c.Addr())}
		one := uint8(1)
		if err := r.maps.SkipCidrs.Update(&ck, &one, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write excluded CIDR %s: %w", c, err)
		}
	}

	in := bpf.RedirectPodIn{NetnsCookie: a.NetnsCookie, ListenPort: r.cfg.InboundPort, OutboundPort: r.cfg.OutboundPort}
	if pod.InboundPorts == nil {
		in.Flags = uint16(bpf.RedirectPodInFlagPOD_IN_ALL_PORTS)
	}
	for _, ip := range a.Addrs {
		ln := a.inLn.v4
		if ip.Is6() {
			ln = a.inLn.v6
		}
		if ln == nil {
			continue
		}
		key := toBPFAddr(ip)
		err := socketFD(ln, func(fd int) error {
			return r.maps.InboundListeners.Update(&key, uint64(fd), ebpf.UpdateAny)
		})
		if err != nil {
			return fmt.Errorf("register inbound listener for %s: %w", ip, err)
		}
		if err := r.maps.PodsIn.Update(&key, &in, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write inbound settings for %s: %w", ip, err)
		}
	}
	local := a.localAddrs()
	if err := r.maps.PodsLocal.Update(&a.NetnsCookie, &local, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write pod addresses: %w", err)
	}
	// Outbound settings last: they switch capture on.
	out := bpf.RedirectPodOut{ListenPort: r.cfg.OutboundPort}
	if err := r.maps.PodsOut.Update(&a.NetnsCookie, &out, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write outbound settings: %w", err)
	}
	return nil
}

// localAddrs are the addresses the pod's redirected sockets report as their own:
// its first IPv4 and first IPv6 address, the ones the kernel picks as source on a
// pod's single interface.
func (a *Attachment) localAddrs() bpf.RedirectPodLocal {
	var l bpf.RedirectPodLocal
	var have4, have6 bool
	for _, ip := range a.Addrs {
		switch {
		case ip.Is4() && !have4:
			l.V4, have4 = toBPFAddr(ip), true
		case ip.Is6() && !have6:
			l.V6, have6 = toBPFAddr(ip), true
		}
	}
	return l
}

// deletePodEntries removes every map entry of a pod, found by its record. Missing
// entries are fine: this also cleans up after a crash halfway through Attach.
func (r *Redirector) deletePodEntries(rec bpf.RedirectPodRecord) {
	cookie := rec.NetnsCookie
	_ = r.maps.PodsOut.Delete(&cookie)
	_ = r.maps.PodsLocal.Delete(&cookie)
	r.deleteFastPod(cookie)
	for i := 0; i < int(rec.Nips) && i < len(rec.Ips); i++ {
		key := rec.Ips[i]
		// Only remove an IP's entry if it still belongs to this pod: IPs are reused.
		var in bpf.RedirectPodIn
		if err := r.maps.PodsIn.Lookup(&key, &in); err == nil && in.NetnsCookie == cookie {
			_ = r.maps.PodsIn.Delete(&key)
			_ = r.maps.InboundListeners.Delete(&key)
		}
	}
	var pk bpf.RedirectPodPort
	var pv uint8
	var stale []bpf.RedirectPodPort
	for it := r.maps.PodPorts.Iterate(); it.Next(&pk, &pv); {
		if pk.NetnsCookie == cookie {
			stale = append(stale, pk)
		}
	}
	for _, k := range stale {
		_ = r.maps.PodPorts.Delete(&k)
	}
	var ck bpf.RedirectCidrKey
	var staleC []bpf.RedirectCidrKey
	for it := r.maps.SkipCidrs.Iterate(); it.Next(&ck, &pv); {
		if ck.NetnsCookie == cookie {
			staleC = append(staleC, ck)
		}
	}
	for _, k := range staleC {
		_ = r.maps.SkipCidrs.Delete(&k)
	}
}

// link attaches (or adopts pinned) links to the pod's cgroup and netns.
func (a *Attachment) link() (err error) {
	if err := os.MkdirAll(a.pinDir, 0o700); err != nil {
		return fmt.Errorf("create pod pin dir: %w", err)
	}
	defer func() {
		if err != nil {
			a.unlink()
		}
	}()
	cg, err := os.Open(a.Pod.CgroupDir)
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	defer cg.Close()
	var cgStat, nsStat unix.Stat_t
	if err := unix.Fstat(int(cg.Fd()), &cgStat); err != nil {
		return fmt.Errorf("stat cgroup: %w", err)
	}
	if err := unix.Fstat(int(a.netns.Fd()), &nsStat); err != nil {
		return fmt.Errorf("stat netns: %w", err)
	}
	p := a.r.progs
	type step struct {
		name   string
		prog   *ebpf.Program
		target uint64 // cgroup id or netns inode the link must point at
		attach func() (link.Link, error)
	}
	cgroupStep := func(name string, prog *ebpf.Program, at ebpf.AttachType) step {
		return step{name, prog, cgStat.Ino, func() (link.Link, error) {
			return link.AttachCgroup(link.CgroupOptions{Path: a.Pod.CgroupDir, Attach: at, Program: prog})
		}}
	}
	steps := []step{
		cgroupStep("connect4", p.Connect4, ebpf.AttachCGroupInet4Connect),
		cgroupStep("connect6", p.Connect6, ebpf.AttachCGroupInet6Connect),
		cgroupStep("sockops", p.Sockops, ebpf.AttachCGroupSockOps),
		{"sk_lookup", p.SkLookup, nsStat.Ino, func() (link.Link, error) {
			return link.AttachNetNs(int(a.netns.Fd()), p.SkLookup)
		}},
	}
	if a.r.transparent {
		steps = append(steps,
			cgroupStep("getpeername4", p.Getpeername4, ebpf.AttachCgroupInet4GetPeername),
			cgroupStep("getpeername6", p.Getpeername6, ebpf.AttachCgroupInet6GetPeername),
			cgroupStep("getsockname4", p.Getsockname4, ebpf.AttachCgroupInet4GetSockname),
			cgroupStep("getsockname6", p.Getsockname6, ebpf.AttachCgroupInet6GetSockname),
		)
	}
	fastLink := filepath.Join(a.pinDir, "fast_sockops")
	if a.fast {
		steps = append(steps, cgroupStep("fast_sockops", a.r.fast.progs.Sockops, ebpf.AttachCGroupSockOps))
	} else if l, err := link.LoadPinnedLink(fastLink, nil); err == nil {
		// Left by an agent that had the fast path on.
		_ = l.Unpin()
		_ = l.Close()
	}
	for _, s := range steps {
		path := filepath.Join(a.pinDir, s.name)
		if l := adoptLink(path, s.prog, s.target); l != nil {
			a.links = append(a.links, pinnedLink{path, l})
			continue
		}
		l, err := s.attach()
		if err != nil {
			return fmt.Errorf("attach %s: %w", s.name, err)
		}
		if err := l.Pin(path); err != nil {
			l.Close()
			return fmt.Errorf("pin %s link: %w", s.name, err)
		}
		a.links = append(a.links, pinnedLink{path, l})
	}
	return nil
}

// adoptLink takes over a link pinned by an earlier agent if it still points at
// the pod's cgroup or netns, switching it to this agent's program. A stale one
// (the pod was re-created) is removed and nil returned.
func adoptLink(path string, prog *ebpf.Program, target uint64) link.Link {
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return nil
	}
	if info, err := l.Info(); err == nil && linkTarget(info) == target {
		if err := l.Update(prog); err == nil {
			return l
		}
	}
	_ = l.Unpin()
	_ = l.Close()
	return nil
}

func linkTarget(info *link.Info) uint64 {
	if cg := info.Cgroup(); cg != nil {
		return cg.CgroupId
	}
	if ns := info.NetNs(); ns != nil {
		return uint64(ns.NetnsInode)
	}
	return 0
}

func (a *Attachment) unlink() error {
	var errs []error
	for i := len(a.links) - 1; i >= 0; i-- {
		pl := a.links[i]
		if err := pl.link.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", pl.path, err))
		}
		if err := pl.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", pl.path, err))
		}
	}
	a.links = nil
	if err := os.Remove(a.pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove pod pin dir: %w", err))
	}
	return errors.Join(errs...)
}

// closeLocal closes this process's handles but leaves the pins and map entries.
func (a *Attachment) closeLocal() error {
	var errs []error
	for _, pl := range a.links {
		errs = append(errs, pl.link.Close())
	}
	a.links = nil
	errs = append(errs, a.outLn.Close(), a.inLn.Close(), a.netns.Close())
	return errors.Join(errs...)
}

// Detach stops capturing a pod and removes its links, pins and map entries. It
// also cleans up a pod that only an earlier agent had attached.
func (r *Redirector) Detach(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if a, ok := r.pods[id]; ok {
		delete(r.pods, id)
		return r.detachLocked(a, true)
	}
	if _, ok := r.lookupRecord(id); ok {
		return r.removePinnedLocked(id)
	}
	if _, err := os.Stat(filepath.Join(r.podsDir, podPinName(id))); err == nil {
		return r.removePinnedLocked(id)
	}
	return fmt.Errorf("detach %s: %w", id, ErrNotAttached)
}

// OutboundListeners are Outbound's listeners, IPv4 and (when the pod has it)
// IPv6, to be served each on its own: accepting through the merged Outbound
// hands every connection from one goroutine to another. Serve these or accept
// on Outbound, not both.
func (a *Attachment) OutboundListeners() []net.Listener { return a.outLn.listeners() }

// InboundListeners are Inbound's listeners, as OutboundListeners are Outbound's.
func (a *Attachment) InboundListeners() []net.Listener { return a.inLn.listeners() }

func (r *Redirector) detachLocked(a *Attachment, unpin bool) error {
	var errs []error
	// Links first, so no new connection is steered to listeners about to close.
	if unpin {
		errs = append(errs, a.unlink())
	}
	r.deletePodEntries(a.record())
	k := podKey(a.Pod.ID)
	_ = r.maps.PodIndex.Delete(&k)
	delete(r.byCookie, a.NetnsCookie)
	errs = append(errs, a.closeLocal())
	r.orig.forget(a.NetnsCookie) // its listener is closed: nothing left will be accepted
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach %s: %w", a.Pod.ID, err)
	}
	return nil
}

// removePinnedLocked removes what an earlier agent left for a pod.
func (r *Redirector) removePinnedLocked(id string) error {
	var errs []error
	if rec, ok := r.lookupRecord(id); ok {
		r.deletePodEntries(rec)
	}
	k := podKey(id)
	_ = r.maps.PodIndex.Delete(&k)
	dir := filepath.Join(r.podsDir, podPinName(id))
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			errs = append(errs, l.Unpin(), l.Close())
		} else if err := os.Remove(path); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove pinned pod %s: %w", id, err)
	}
	return nil
}

// Pinned lists the IDs of pods with state in the kernel, whether attached by this
// process or left by an earlier agent, so a restarted agent can reconcile.
func (r *Redirector) Pinned() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pinnedLocked()
}

func (r *Redirector) pinnedLocked() ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	var k bpf.RedirectPodId
	var rec bpf.RedirectPodRecord
	it := r.maps.PodIndex.Iterate()
	for it.Next(&k, &rec) {
		id := podIDString(k)
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if err := it.Err(); err != nil {
		return ids, fmt.Errorf("list pinned pods: %w", err)
	}
	return ids, nil
}

func podIDString(k bpf.RedirectPodId) string {
	b := make([]byte, 0, len(k.Id))
	for _, c := range k.Id {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// podPinName turns a pod ID into a bpffs file name: bpffs refuses dots and
// slashes, so anything but [A-Za-z0-9_-] is replaced and a short hash keeps
// different IDs apart.
func podPinName(id string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, id)
	if clean == id {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return clean + "_" + hex.EncodeToString(sum[:4])
}

// Attached returns the attachment of a pod, if this process attached it.
func (r *Redirector) Attached(id string) (*Attachment, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.pods[id]
	return a, ok
}
