package proxy

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Handoff lets the two proxies of a same-node hop, both in this process, pass
// the hop's bytes in memory instead of through the TCP connection between
// them. The outbound proxy still dials that connection from the client pod's
// netns, and the kernel still delivers it to the server pod's inbound proxy:
// the handshake crosses the node's network as before, so the CNI's network
// policy, conntrack and the server pod's capture all decide on it as on any
// connection. Once both proxies hold the connection's two ends they meet here,
// by its four-tuple, and from then on write to each other in memory; the TCP
// connection stays open and silent, and closes with them. What a request
// saves is one TCP round trip through the veths and the bridge: four system
// calls, two wake-ups of the poller and the kernel's TCP work both ways.
//
// A meeting is only waited for when it can happen: the outbound side waits
// when the destination is a pod address and port captured inbound here
// (SetTargets), the inbound side when the client is a local pod and a
// hand-off dial to its address is in flight (or, by identity, below). A side that waits in vain for
// handoffWait goes on over TCP (counted as missed); the decision is taken under
// one lock, so the two sides never disagree on which way the bytes go.
//
// A connection to a Service's virtual IP is another matter: the outbound proxy
// dials the virtual IP, kube-proxy rewrites the destination on the way, and
// the inbound proxy sees the backend's address, so the four-tuples differ and
// the outbound side cannot know before the dial whether the backend is here.
// With an identity for connections (IdentifyBy: the sequence numbers both
// ends' SYNs took, which NAT leaves alone, recorded by a BPF program on this
// process's sockets) the two sides meet by that instead, and wait only when
// the identity says the other end is this process's: the outbound side when
// its peer was accepted here, the inbound side when its peer was dialed here
// and the dialer has not decided yet. A dialer that decided on TCP leaves a
// note for a while (decidedTTL), so the accept that comes after does not wait.
type Handoff struct {
	targets  atomic.Pointer[map[netip.Addr][]uint16] // pod address -> ports its inbound capture skips
	wait     time.Duration
	identify atomic.Pointer[IdentifyFunc] // nil: meetings by four-tuple only

	mu      sync.Mutex
	dialing map[netip.AddrPort]int // hand-off dials in flight, per destination
	first   map[handoffKey]*meeting
	overTCP map[ConnID]time.Time // dialers that went over TCP, by identity
	tcpFIFO []decided            // overTCP's entries, oldest first, for expiry

	matched, missed atomic.Uint64
}

// ConnID names a TCP connection alike from both its ends, whatever NAT did to
// its addresses on the way.
type ConnID struct{ Client, Server uint32 }

// ConnEnds says which ends of a connection are sockets of this process.
type ConnEnds struct{ Client, Server bool }

// IdentifyFunc returns the identity of c's TCP connection and which of its
// ends are this process's; ok is false when c has none (not TCP, or made
// before the identity was recorded).
type IdentifyFunc func(c net.Conn) (id ConnID, ours ConnEnds, ok bool)

type decided struct {
	id ConnID
	at time.Time
}

// decidedTTL is how long a dialer's decision for TCP is remembered for the
// accept of the same connection, which normally follows within microseconds.
// An accept later than that waits handoffWait in vain once.
const decidedTTL = time.Second

// HandoffTarget is a pod whose inbound proxy runs in this process.
type HandoffTarget struct {
	Addrs     []netip.Addr
	SkipPorts []uint16 // ports its inbound capture leaves to the app
}

// HandoffStats counts meetings: Matched connections went through memory;
// Missed counts the sides that waited for their peer in vain and used TCP.
type HandoffStats struct {
	Matched, Missed uint64
}

// handoffWait bounds the wait for the other side. The inbound side's accept
// normally follows the outbound side's connect within microseconds; a proxy
// that never comes (the pod was released meanwhile) costs a new connection
// this much once, and the connection then works over TCP.
const handoffWait = 100 * time.Millisecond

// identifyAfter is how long an accepted connection waits for the announced
// dial it seems to come from before it asks for its identity (awaitDialer):
// the dial normally comes within microseconds, and the question costs two BPF
// map look-ups that the common case should not pay.
const identifyAfter = time.Millisecond

// NewHandoff returns a Handoff with no targets: nothing is handed off until
// SetTargets names the pods.
func NewHandoff() *Handoff {
	return &Handoff{
		wait:    handoffWait,
		dialing: make(map[netip.AddrPort]int),
		first:   make(map[handoffKey]*meeting),
		overTCP: make(map[ConnID]time.Time),
	}
}

// IdentifyBy lets connections whose four-tuples differ on the two sides
// (through a Service's virtual IP) meet by their identity from now on.
func (h *Handoff) IdentifyBy(f IdentifyFunc) { h.identify.Store(&f) }

// identity is IdentifyBy's function called on c; ok is false without one.
func (h *Handoff) identity(c net.Conn) (id ConnID, ours ConnEnds, ok bool) {
	f := h.identify.Load()
	if f == nil {
		return ConnID{}, ConnEnds{}, false
	}
	return (*f)(c)
}

// SetTargets replaces the pods whose inbound proxies run in this process.
func (h *Handoff) SetTargets(ts []HandoffTarget) {
	m := make(map[netip.Addr][]uint16)
	for _, t := range ts {
		for _, a := range t.Addrs {
			m[a.Unmap()] = slices.Clone(t.SkipPorts)
		}
	}
	h.targets.Store(&m)
}

// Stats returns the counts so far.
func (h *Handoff) Stats() HandoffStats {
	return HandoffStats{Matched: h.matched.Load(), Missed: h.missed.Load()}
}

// serves reports whether dst is captured inbound by this process.
func (h *Handoff) serves(dst netip.AddrPort) bool {
	m := h.targets.Load()
	if m == nil {
		return false
	}
	skip, ok := (*m)[dst.Addr().Unmap()]
	return ok && !slices.Contains(skip, dst.Port())
}

func (h *Handoff) local(a netip.Addr) bool {
	m := h.targets.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[a.Unmap()]
	return ok
}

// handoffKey is where the two sides meet: by four-tuple, or by identity (id,
// addresses zero).
type handoffKey struct {
	src, dst netip.AddrPort
	id       ConnID
}

// meeting is the side that came first, waiting for the other under one key,
// or two (awaitDialer).
type meeting struct {
	carrier net.Conn
	keys    [2]handoffKey
	nkeys   int
	ready   chan struct{} // closed when the other side came
	conn    *memConn      // this side's end; set, under h.mu, before ready closes
}

// announce tells inbound accepts that an outbound dial to dst is about to
// happen, before it is made: the accept may come before the dial returns.
// It reports false when dst is not a hand-off target.
func (h *Handoff) announce(dst string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(dst)
	if err != nil || !h.serves(ap) {
		return netip.AddrPort{}, false
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	h.mu.Lock()
	h.dialing[ap]++
	h.mu.Unlock()
	return ap, true
}

// undial ends an announcement; under h.mu.
func (h *Handoff) undial(dst netip.AddrPort) {
	if h.dialing[dst]--; h.dialing[dst] <= 0 {
		delete(h.dialing, dst)
	}
}

// abandon ends the announcement of a dial that failed.
func (h *Handoff) abandon(dst netip.AddrPort) {
	h.mu.Lock()
	h.undial(dst)
	h.mu.Unlock()
}

// dialed is the outbound side: c was announced for dst. It returns the
// in-memory end, or c when the inbound side did not come.
func (h *Handoff) dialed(c net.Conn, dst netip.AddrPort) net.Conn {
	src, ok1 := addrPort(c.LocalAddr())
	remote, ok2 := addrPort(c.RemoteAddr())
	h.mu.Lock()
	h.undial(dst)
	if !ok1 || !ok2 {
		h.mu.Unlock()
		return c
	}
	mc, met := h.meet(handoffKey{src: src, dst: remote}, c)
	if !met {
		// The inbound side may still come, and would find no announcement:
		// tell it not to wait.
		if id, _, ok := h.identity(c); ok {
			h.mu.Lock()
			h.wentOverTCP(id, time.Now())
			h.mu.Unlock()
		}
	}
	return mc
}

// dialedUnannounced is the outbound side of a dial to an address that is not
// a hand-off target, a Service's virtual IP for one: it is handed off when the
// identity says the connection was accepted by this process.
func (h *Handoff) dialedUnannounced(c net.Conn) net.Conn {
	id, ours, ok := h.identity(c)
	if !ok {
		return c
	}
	k := handoffKey{id: id}
	h.mu.Lock()
	if h.first[k] != nil || ours.Server {
		mc, _ := h.meet(k, c)
		return mc
	}
	h.wentOverTCP(id, time.Now())
	h.mu.Unlock()
	return c
}

// wentOverTCP notes that the dialer of id uses TCP; under h.mu. Notes older
// than decidedTTL go, so a node's dials to other nodes leave nothing behind.
func (h *Handoff) wentOverTCP(id ConnID, now time.Time) {
	for len(h.tcpFIFO) > 0 && now.Sub(h.tcpFIFO[0].at) > decidedTTL {
		old := h.tcpFIFO[0]
		if at, ok := h.overTCP[old.id]; ok && !at.After(old.at) {
			delete(h.overTCP, old.id)
		}
		h.tcpFIFO = h.tcpFIFO[1:]
	}
	if len(h.tcpFIFO) == 0 {
		h.tcpFIFO = nil // let the backing array go after a burst
	}
	h.overTCP[id] = now
	h.tcpFIFO = append(h.tcpFIFO, decided{id: id, at: now})
}

// accepted is the inbound side: c was accepted from a client. Its dial was
// addressed to c's local address (eBPF capture) or to dst, the original
// destination the resolver found (behind an iptables REDIRECT the local
// address is the listener's). It returns the in-memory end, or c when c is
// not one of this process's hand-off dials.
func (h *Handoff) accepted(c net.Conn, dst netip.AddrPort) net.Conn {
	src, ok := addrPort(c.RemoteAddr())
	if !ok {
		return c
	}
	if h.local(src.Addr()) {
		keys := [2]handoffKey{{src: src}, {src: src, dst: netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())}}
		keys[0].dst, _ = addrPort(c.LocalAddr())
		h.mu.Lock()
		for _, k := range keys {
			if mc, ok := h.pair(k, c); ok {
				return mc
			}
		}
		for _, k := range keys {
			if h.dialing[k.dst] > 0 {
				return h.awaitDialer(k, c)
			}
		}
		h.mu.Unlock()
	}
	// Not an announced dial to a pod's address: through a Service's virtual
	// IP, perhaps, and the source too may have been rewritten (kube-proxy
	// masquerades a pod's call to a Service it backs itself), so any client
	// is looked up: the dialer waits when the accepting end is ours.
	id, ours, ok := h.identity(c)
	if !ok || !ours.Client {
		return c // a connection like any other, or a client that is not this process's proxy
	}
	k := handoffKey{id: id}
	h.mu.Lock()
	if _, ok := h.overTCP[id]; ok {
		delete(h.overTCP, id)
		h.mu.Unlock()
		return c // the dialer went over TCP already
	}
	mc, _ := h.meet(k, c)
	return mc
}

// meet pairs c with the side waiting under k, or waits for it; called with
// h.mu held, which it releases. met is false when it waited in vain and c is
// to be used over TCP.
func (h *Handoff) meet(k handoffKey, c net.Conn) (_ net.Conn, met bool) {
	if mc, ok := h.pair(k, c); ok {
		return mc, true
	}
	m := h.register(c, k)
	h.mu.Unlock()
	return h.await(m, c, h.wait)
}

// pair hands c's peer its end when a side waits under k, and then releases
// h.mu; ok is false, and h.mu still held, when none does.
func (h *Handoff) pair(k handoffKey, c net.Conn) (_ net.Conn, ok bool) {
	m := h.first[k]
	if m == nil {
		return nil, false
	}
	h.unregister(m)
	mine, theirs := newMemConnPair(c, m.carrier)
	m.conn = theirs
	close(m.ready)
	h.mu.Unlock()
	h.matched.Add(1)
	return mine, true
}

// register makes c wait under k; under h.mu.
func (h *Handoff) register(c net.Conn, k handoffKey) *meeting {
	m := &meeting{carrier: c, ready: make(chan struct{})}
	h.addKey(m, k)
	return m
}

// addKey lets m be found under k too; under h.mu.
func (h *Handoff) addKey(m *meeting, k handoffKey) {
	m.keys[m.nkeys] = k
	m.nkeys++
	h.first[k] = m
}

// unregister removes m from under all its keys; under h.mu.
func (h *Handoff) unregister(m *meeting) {
	for _, k := range m.keys[:m.nkeys] {
		if h.first[k] == m {
			delete(h.first, k)
		}
	}
}

// await waits up to d for the other side of m, registered for c.
func (h *Handoff) await(m *meeting, c net.Conn, d time.Duration) (_ net.Conn, met bool) {
	t := time.NewTimer(d)
	select {
	case <-m.ready:
		t.Stop()
		return m.conn, true
	case <-t.C:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.conn != nil {
		return m.conn, true // came as the timer fired
	}
	h.unregister(m)
	h.missed.Add(1)
	return c, false
}

// awaitDialer is the inbound side of c, accepted from a local pod while a
// hand-off dial to its destination is announced: it waits for that dial under
// the four-tuple k; called with h.mu held, which it releases. A dial that has
// not come after identifyAfter may be another: the same pod calling the same
// pod through a Service's virtual IP at the same time, whose dialer waits
// under the connection's identity, not the four-tuple (dialedUnannounced).
// Then c waits under its identity too, or pairs with that dialer at once; and
// when its dialer went over TCP, it does not wait any longer.
func (h *Handoff) awaitDialer(k handoffKey, c net.Conn) net.Conn {
	m := h.register(c, k)
	h.mu.Unlock()
	if h.identify.Load() == nil {
		mc, _ := h.await(m, c, h.wait)
		return mc
	}
	t := time.NewTimer(identifyAfter)
	select {
	case <-m.ready:
		t.Stop()
		return m.conn
	case <-t.C:
	}
	id, ours, ok := h.identity(c)
	h.mu.Lock()
	if m.conn != nil {
		h.mu.Unlock()
		return m.conn
	}
	if ok && ours.Client {
		ik := handoffKey{id: id}
		if _, tcp := h.overTCP[id]; tcp {
			delete(h.overTCP, id)
			h.unregister(m)
			h.mu.Unlock()
			return c
		}
		if h.first[ik] != nil {
			h.unregister(m)
			mc, _ := h.pair(ik, c)
			return mc
		}
		h.addKey(m, ik)
	}
	h.mu.Unlock()
	mc, _ := h.await(m, c, h.wait-identifyAfter)
	return mc
}
