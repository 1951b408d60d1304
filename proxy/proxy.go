// Package proxy is hoptrace's transparent tracing proxy. One Proxy serves one side of
// one pod: an Outbound proxy accepts the pod's redirected outbound connections and
// dials their original destinations; an Inbound proxy accepts the connections
// steered to the pod and dials the local app.
//
// Every connection is classified on its first bytes. HTTP/1.x and HTTP/2 (prior
// knowledge: h2c, gRPC) are terminated, timed per leg and traced; anything else (TLS,
// databases, server-speaks-first protocols) is spliced through untouched.
package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/hoptrace/hoptrace/internal/rawsock"
	"github.com/hoptrace/hoptrace/spans"
)

// Direction says which side of a hop a proxy serves.
type Direction uint8

const (
	// Outbound proxies serve a pod's own requests: legs outbound-server and
	// outbound-client.
	Outbound Direction = iota + 1
	// Inbound proxies serve requests arriving for a pod: legs inbound-server and
	// inbound-client.
	Inbound
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return "invalid"
}

// Legs returns the server and client legs a proxy of this direction times.
func (d Direction) Legs() (server, client spans.Leg) {
	if d == Inbound {
		return spans.InboundServer, spans.InboundClient
	}
	return spans.OutboundServer, spans.OutboundClient
}

// Resolver finds the original destination of an accepted connection. The redirect
// layer provides it: a BPF map lookup for outbound, the socket's local address for
// inbound (see LocalAddrResolver).
type Resolver interface {
	OriginalDst(c net.Conn) (netip.AddrPort, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(c net.Conn) (netip.AddrPort, error)

// OriginalDst calls f.
func (f ResolverFunc) OriginalDst(c net.Conn) (netip.AddrPort, error) { return f(c) }

// LocalAddrResolver resolves a connection to its own local address: what an
// sk_lookup-steered inbound connection was originally sent to.
var LocalAddrResolver Resolver = ResolverFunc(func(c net.Conn) (netip.AddrPort, error) {
	ap, ok := addrPort(c.LocalAddr())
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("local address %v is not TCP/IP", c.LocalAddr())
	}
	return ap, nil
})

// Dialer opens upstream connections: from the source pod's netns (outbound) or from
// 127.0.0.6 (inbound). *net.Dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Config configures a Proxy. Direction and Resolver are required.
type Config struct {
	Direction Direction
	Resolver  Resolver
	Dialer    Dialer // nil: a plain net.Dialer

	// Tracing. With a nil Sampler the proxy never touches trace headers and records
	// nothing; with a nil Recorder it still decides and propagates.
	Recorder spans.Recorder
	Sampler  *spans.Sampler
	Routes   *spans.Routes   // span names; nil names by method
	Resource *spans.Resource // the pod, attached to every span

	// TrustSampling says whether an inbound connection's client is inside the
	// mesh; it is asked once per connection. An untrusted client's sampled
	// flag, B3 debug and hoptrace-sample neither decide nor force a trace
	// (spans.Policy.Untrusted). nil trusts everyone. Outbound clients are the
	// pod's own app, inside the mesh: always trusted.
	TrustSampling func(peer netip.Addr) bool
	// ForcedTraces rations the traces hoptrace-sample and B3 debug force
	// (spans.Policy.Forced); a pod's two proxies share one. nil: unlimited.
	ForcedTraces spans.Limiter

	// Observer receives per-request and per-connection statistics; may be nil.
	Observer Observer

	// Handoff, shared by the proxies of one process, passes the bytes of a
	// hop whose two proxies both run here in memory (handoff.go); nil: every
	// hop goes through TCP.
	Handoff *Handoff

	// Infer links outbound requests without trace context to the inbound
	// request that caused them (HTTP/1 only); nil leaves them alone.
	Infer ContextInference

	// SkipTrace exempts requests from tracing (kubelet probes, say); they are
	// still proxied and observed, and their trace headers pass untouched. It
	// is asked about every request when Sampler is set.
	SkipTrace func(RequestInfo) bool

	// SkipDetect marks destinations whose protocol is known to be opaque
	// (server-speaks-first ports): they are spliced at once, without waiting.
	SkipDetect func(dst netip.AddrPort) bool

	DetectTimeout  time.Duration // wait for a client's first bytes; then opaque (default 300ms)
	HeaderTimeout  time.Duration // read one request head, from its first byte (default 10s)
	IdleTimeout    time.Duration // idle keep-alive connections, both sides (default 60s; an HTTP/1 client connection goes after 15/16 to all of it)
	DialTimeout    time.Duration // upstream connect (default 5s)
	MaxHeaderBytes int           // request head limit; beyond it 431 (default 64 KiB)
	// SpliceIdleTimeout closes a relayed byte stream (an opaque connection, a
	// WebSocket or CONNECT tunnel) once neither side has sent anything for this
	// long: a peer that vanished without a FIN or reset would otherwise hold
	// two sockets and two goroutines forever. Both sides get a FIN, as from a
	// NAT that forgot the flow. Default 1h; negative: never.
	SpliceIdleTimeout time.Duration

	// CaptureHeaders names request and response headers recorded as span
	// attributes (http.request.header.<name>). Nothing else is; credentials only
	// if listed here. A name that is not an HTTP token makes New fail
	// (ErrHeaderName).
	CaptureHeaders []string
	// QueryString records url.query (and the query in url.full).
	QueryString bool

	Logger *slog.Logger
}

// Defaults for zero Config durations and limits.
const (
	DefaultDetectTimeout = 300 * time.Millisecond
	DefaultHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
	// DefaultSpliceIdleTimeout is long: database pools and message brokers keep
	// connections silent for many minutes, and the app, not the mesh, should
	// decide when they end.
	DefaultSpliceIdleTimeout = time.Hour
	DefaultDialTimeout       = 5 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// ErrClosed is returned by Serve after Shutdown or Close.
var ErrClosed = errors.New("proxy closed")

// ErrHeaderName means a name in Config.CaptureHeaders is not an HTTP field
// name (an RFC 9110 token): no request could carry it.
var ErrHeaderName = errors.New("not an HTTP header name")

// CheckCaptureHeaders returns an error wrapping ErrHeaderName for the first of
// names that no header could match. Blank names are ignored, as New ignores
// them.
func CheckCaptureHeaders(names []string) error {
	for _, n := range names {
		if t := strings.TrimSpace(n); t != "" && !isToken(t) {
			return fmt.Errorf("capture header %q: %w", n, ErrHeaderName)
		}
	}
	return nil
}

// Proxy is one tracing proxy instance. Serve may run on several listeners at once.
type Proxy struct {
	cfg          Config
	tr           tracing
	log          *slog.Logger
	pool         *pool
	h2srv        *http2.Server
	h2base       *http.Server // carries h2 graceful shutdown and header limits
	h2t          *http2.Transport
	h2relays     h2Relays // relayed HTTP/2 connections, for Shutdown's GOAWAY
	closing      atomic.Bool
	nextFlow     atomic.Uint64
	mu           sync.Mutex
	listeners    map[net.Listener]struct{}
	flows        map[*flow]struct{}
	active       int  // connections being served, under mu
	closed       bool // Close ran, under mu
	shutdownOnce sync.Once
}

// New checks cfg, fills in defaults and returns a Proxy ready to Serve.
func New(cfg Config) (*Proxy, error) {
	if cfg.Direction != Outbound && cfg.Direction != Inbound {
		return nil, fmt.Errorf("invalid direction %d", cfg.Direction)
	}
	if cfg.Resolver == nil {
		return nil, errors.New("config has no resolver")
	}
	if err := CheckCaptureHeaders(cfg.CaptureHeaders); err != nil {
		return nil, err
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	setDefault(&cfg.DetectTimeout, DefaultDetectTimeout)
	setDefault(&cfg.HeaderTimeout, DefaultHeaderTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.DialTimeout, DefaultDialTimeout)
	if cfg.SpliceIdleTimeout == 0 {
		cfg.SpliceIdleTimeout = DefaultSpliceIdleTimeout
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		cfg:       cfg,
		tr:        newTracing(&cfg),
		log:       cfg.Logger.With("direction", cfg.Direction.String()),
		listeners: make(map[net.Listener]struct{}),
		flows:     make(map[*flow]struct{}),
	}
	p.pool = newPool(cfg.IdleTimeout)
	if err := p.initH2(); err != nil {
		return nil, err
	}
	return p, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Serve accepts connections on ln until Shutdown or Close, then returns ErrClosed.
// ln should be a TCP listener with MPTCP off, as redirect opens them (an MPTCP
// socket cannot enter the SOCKMAP that inbound capture steers with): the proxy
// half-closes connections and reads their addresses.
func (p *Proxy) Serve(ln net.Listener) error {
	if !p.trackListener(ln, true) {
		return ErrClosed
	}
	defer p.trackListener(ln, false)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.closing.Load() {
				return ErrClosed
			}
			if isTemporary(err) {
				// Out of file descriptors and the like: back off like net/http does
				// instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		if !p.trackConn(1) {
			c.Close()
			return ErrClosed
		}
		go p.serveConn(c, ln.Addr())
	}
}

// refused tells the observer, if it listens for them, of a connection closed
// unserved.
func (p *Proxy) refused(why Refusal) {
	if o, ok := p.cfg.Observer.(RefusalObserver); ok {
		o.ObserveRefused(p.cfg.Direction, why)
	}
}

func isTemporary(err error) bool {
	var ne interface{ Temporary() bool }
	return errors.As(err, &ne) && ne.Temporary()
}

// trackConn counts connections in and out; once shutdown began no new one is
// taken on.
func (p *Proxy) trackConn(delta int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if delta > 0 && p.closing.Load() {
		return false
	}
	p.active += delta
	return true
}

func (p *Proxy) trackListener(ln net.Listener, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.listeners, ln)
		return true
	}
	if p.closing.Load() {
		return false
	}
	p.listeners[ln] = struct{}{}
	return true
}

// serveConn classifies one accepted connection and hands it to the protocol's
// server. It owns c and closes it.
func (p *Proxy) serveConn(c net.Conn, self net.Addr) {
	defer p.trackConn(-1)
	defer func() { c.Close() }() // c may become a hand-off's memConn
	accepted := time.Now()
	dst, err := p.cfg.Resolver.OriginalDst(c)
	if err != nil {
		p.log.Debug("no original destination", "peer", c.RemoteAddr(), "err", err)
		p.refused(RefusedNoOriginalDst)
		return
	}
	if loopsBack(dst, self) {
		// Connected to the listener itself, not redirected: dialing dst would
		// come straight back here.
		p.log.Debug("refusing connection addressed to the proxy itself", "peer", c.RemoteAddr(), "dst", dst)
		p.refused(RefusedSelf)
		return
	}
	// After the resolver, which gets the connection as the listener made it
	// (iptproxy's reads SO_ORIGINAL_DST from the *net.TCPConn).
	c = rawsock.Wrap(c)
	if p.cfg.Handoff != nil && p.cfg.Direction == Inbound {
		c = p.cfg.Handoff.accepted(c, dst)
	}
	fl := p.openFlow(c, dst, accepted)
	defer p.closeFlow(fl)

	counted := &countingConn{Conn: c, fl: fl}
	br := getReader(counted)
	defer func() { putReader(br) }()
	proto := ProtocolOpaque
	var up net.Conn // dialed early, when the client was silent through detection
	if p.cfg.SkipDetect == nil || !p.cfg.SkipDetect(dst) {
		proto, err = detect(counted, br, p.cfg.DetectTimeout)
		if err != nil {
			return // closed before sending anything: nothing to relay
		}
		if proto == ProtocolOpaque && br.Buffered() == 0 {
			var done bool
			if proto, up, done = p.detectLate(counted, br, fl, dst); done {
				return
			}
		}
	}
	fl.setProtocol(proto)
	switch proto {
	case ProtocolHTTP1:
		if up != nil {
			p.pool.put(newUpstream(up, dst)) // the exchange takes it from there
		}
		hc := newH1Conn(p, counted, br, fl, dst, accepted)
		br = nil // hc owns it: it lets go of its buffers while the connection idles
		hc.serve()
		hc.release()
	case ProtocolHTTP2:
		p.serveH2(counted, br, fl, dst, up)
	default:
		// What br holds was counted on its way in.
		p.serveOpaque(c, br, fl, dst, up)
	}
}

// detectLate serves a client that sent nothing within the detection timeout.
// It is waiting for the server to speak first (MySQL, SMTP), or it opened its
// connection before it had anything to send (a pool filled ahead of use, a
// load generator that connects first). The upstream is dialed at once, so a
// server that speaks first is heard without delay, and whichever side speaks
// first decides: the server, and the connection is relayed as opaque; the
// client, and its bytes are classified as if they had come in time, so an
// HTTP client that opened early is traced like any other. up is the upstream
// connection for the protocol's server to use; done reports the connection was
// dealt with here (it ended, or the upstream could not be reached).
func (p *Proxy) detectLate(c net.Conn, br *bufio.Reader, fl *flow, dst netip.AddrPort) (proto Protocol, up net.Conn, done bool) {
	cw := newPeeker(c)
	if !cw.canWait() {
		return ProtocolOpaque, nil, false // cannot wait without reading: opaque, as before
	}
	up, err := p.dial(context.Background(), dst.String())
	if err != nil {
		abort(c) // a reset, as the client would have got without the proxy
		p.log.Debug("opaque upstream unreachable", "dst", dst, "err", err)
		return ProtocolOpaque, nil, true
	}
	uw := newPeeker(up)
	if idle := p.cfg.SpliceIdleTimeout; idle > 0 {
		deadline := time.Now().Add(idle)
		c.SetReadDeadline(deadline)
		up.SetReadDeadline(deadline)
	}
	clientSpoke, upSpoke := make(chan error, 1), make(chan error, 1)
	go func() { upSpoke <- uw.wait() }()
	go func() { clientSpoke <- cw.wait() }()
	var clientErr, upErr error
	var first bool // the client spoke first
	select {
	case clientErr = <-clientSpoke:
		first = true
		up.SetReadDeadline(aLongTimeAgo) // end the other wait
		<-upSpoke
	case upErr = <-upSpoke:
		c.SetReadDeadline(aLongTimeAgo)
		<-clientSpoke
	}
	c.SetReadDeadline(time.Time{})
	up.SetReadDeadline(time.Time{})
	switch {
	case first && errors.Is(clientErr, os.ErrDeadlineExceeded) || !first && errors.Is(upErr, os.ErrDeadlineExceeded):
		// Neither side said anything for the splice idle timeout.
		fl.silent.Store(true)
		closeWrite(c)
		closeWrite(up)
		up.Close()
		return ProtocolOpaque, nil, true
	case !first || clientErr != nil:
		return ProtocolOpaque, up, false // the server spoke first, or the client went: relay what there is
	}
	proto, err = detect(c, br, p.cfg.DetectTimeout)
	if err != nil {
		up.Close()
		return ProtocolOpaque, nil, true
	}
	return proto, up, false
}

// loopsBack reports whether dst is the listener's own address.
func loopsBack(dst netip.AddrPort, self net.Addr) bool {
	ap, ok := addrPort(self)
	if !ok || ap.Port() != dst.Port() {
		return false
	}
	return ap.Addr().IsUnspecified() || ap.Addr().Unmap() == dst.Addr().Unmap()
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	case interface{ AddrPort() netip.AddrPort }:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if a == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// Close closes the listeners and every connection at once.
func (p *Proxy) Close() error {
	p.beginShutdown()
	p.mu.Lock()
	p.closed = true
	for fl := range p.flows {
		fl.conn.Close()
		if u := fl.upstream.Load(); u != nil {
			(*u).Close() // an exchange waiting on its upstream wakes up
		}
	}
	p.mu.Unlock()
	p.pool.close()
	p.h2t.CloseIdleConnections()
	return nil
}

// Shutdown stops accepting, lets in-flight requests finish (idle HTTP/1
// connections close, HTTP/2 connections get GOAWAY, opaque splices run to their
// end) and returns when every connection is gone, or closes the rest when ctx ends.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.beginShutdown()
	// GOAWAY on every HTTP/2 connection: the relayed ones, and the terminated
	// ones through the OnShutdown hook http2.ConfigureServer registered (the
	// base server has no listeners of its own).
	p.h2relays.drain()
	_ = p.h2base.Shutdown(ctx)

	poll := time.Millisecond
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		if p.closeIdle() == 0 {
			p.pool.close()
			p.h2t.CloseIdleConnections()
			return nil
		}
		select {
		case <-ctx.Done():
			p.Close()
			return ctx.Err()
		case <-t.C:
			poll = min(2*poll, 100*time.Millisecond)
			t.Reset(poll)
		}
	}
}

func (p *Proxy) beginShutdown() {
	p.shutdownOnce.Do(func() {
		p.closing.Store(true)
		p.mu.Lock()
		defer p.mu.Unlock()
		for ln := range p.listeners {
			ln.Close()
		}
	})
}

// closeIdle closes HTTP/1 connections waiting for their next request, and
// returns how many connections are still being served.
func (p *Proxy) closeIdle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for fl := range p.flows {
		if fl.idle.Load() {
			fl.conn.Close()
		}
	}
	return p.active
}

// Flows returns a snapshot of the connections open right now.
func (p *Proxy) Flows() []FlowStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]FlowStats, 0, len(p.flows))
	for fl := range p.flows {
		out = append(out, fl.stats())
	}
	return out
}

func (p *Proxy) openFlow(c net.Conn, dst netip.AddrPort, start time.Time) *flow {
	peer, _ := addrPort(c.RemoteAddr())
	fl := &flow{
		id:    p.nextFlow.Add(1),
		dir:   p.cfg.Direction,
		peer:  peer,
		dst:   dst,
		start: start,
		conn:  c,
	}
	fl.untrusted = p.cfg.Direction == Inbound && p.cfg.TrustSampling != nil && !p.cfg.TrustSampling(peer.Addr())
	p.mu.Lock()
	p.flows[fl] = struct{}{}
	if p.closed {
		c.Close() // Close ran between Accept and here
	}
	p.mu.Unlock()
	return fl
}

func (p *Proxy) closeFlow(fl *flow) {
	p.mu.Lock()
	delete(p.flows, fl)
	p.mu.Unlock()
	if p.cfg.Observer != nil {
		st := fl.stats()
		st.End = time.Now()
		p.cfg.Observer.ObserveFlow(st)
	}
}

// dialError is a failure to connect to the upstream at all, which clients hear
// about as 503 rather than 502.
type dialError struct {
	dst string
	err error
}

func (e *dialError) Error() string { return "dial " + e.dst + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial opens a connection to dst with the configured dialer and timeout.
type dialResult struct {
	c   net.Conn
	err error
}

func (p *Proxy) dial(ctx context.Context, dst string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	// The dial runs on a goroutine of its own: Go's dial path (and the pod
	// netns dialer's) is deep enough to grow the stack of the goroutine that
	// runs it to 8 KB, and a connection's goroutine keeps the largest stack it
	// ever needed while it has a request in flight. A burst of new connections
	// would cost twice the stack memory for one goroutine start per dial.
	// (BenchmarkInFlightMemory: 17 -> 9 KB of stack per request in flight.)
	var handoff netip.AddrPort
	announced := false
	if p.cfg.Handoff != nil && p.cfg.Direction == Outbound {
		handoff, announced = p.cfg.Handoff.announce(dst)
	}
	ch := make(chan dialResult, 1)
	go func() {
		c, err := p.cfg.Dialer.DialContext(ctx, "tcp", dst)
		if err == nil {
			c = rawsock.Wrap(c)
		}
		switch {
		case announced && err != nil:
			p.cfg.Handoff.abandon(handoff)
		case announced:
			c = p.cfg.Handoff.dialed(c, handoff)
		case err == nil && p.cfg.Handoff != nil && p.cfg.Direction == Outbound:
			// Not a pod's address here: a Service's virtual IP may still
			// lead to one (handoff.go).
			c = p.cfg.Handoff.dialedUnannounced(c)
		}
		ch <- dialResult{c, err}
	}()
	r := <-ch
	c, err := r.c, r.err
	if err != nil {
		return nil, &dialError{dst: dst, err: err}
	}
	return c, nil
}
