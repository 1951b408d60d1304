package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// Protocol is what a connection was found to speak.
type Protocol uint8

const (
	ProtocolUnknown   Protocol = iota
	ProtocolHTTP1              // HTTP/1.0 or 1.1
	ProtocolHTTP2              // HTTP/2 with prior knowledge (h2c)
	ProtocolGRPC               // HTTP/2 carrying gRPC
	ProtocolWebSocket          // HTTP/1.1 upgraded to WebSocket (or another Upgrade/CONNECT tunnel)
	ProtocolTLS                // spliced: a TLS handshake
	ProtocolOpaque             // spliced: anything else
)

var protocolNames = [...]string{"unknown", "http1", "h2", "grpc", "websocket", "tls", "opaque"}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "invalid"
}

// Observer receives the proxy's statistics: the agent's /metrics and /flows. Its
// methods are called on the data path and must not block.
type Observer interface {
	// ObserveRequest is called once per HTTP request, after its response ended.
	ObserveRequest(RequestStats)
	// ObserveFlow is called once per connection, when it closes. Open connections
	// are listed by Proxy.Flows.
	ObserveFlow(FlowStats)
}

// RefusalObserver, when the Config's Observer is one too, hears of each
// connection the proxy closed without serving it: an app sees a reset there,
// and the proxy's only other trace of it is a debug log.
type RefusalObserver interface {
	ObserveRefused(Direction, Refusal)
}

// Refusal is why a connection was closed unserved.
type Refusal uint8

const (
	// RefusedNoOriginalDst: the resolver found no original destination (the
	// capture's record of it was lost, or the connection was not redirected).
	RefusedNoOriginalDst Refusal = iota + 1
	// RefusedSelf: the connection was addressed to the proxy's listener
	// itself, so dialing its destination would come straight back.
	RefusedSelf
)

func (r Refusal) String() string {
	switch r {
	case RefusedNoOriginalDst:
		return "no-original-dst"
	case RefusedSelf:
		return "self"
	}
	return "unknown"
}

// RequestStats describes one proxied request and its two legs.
type RequestStats struct {
	Direction  Direction
	Protocol   Protocol // http1, h2 or grpc
	Peer       netip.AddrPort
	Dst        netip.AddrPort
	Method     string
	Status     int // HTTP status sent to the client; 0 if none was sent
	GRPCStatus int // -1 unless gRPC
	// ServerTime is the server leg: request head read to response fully written.
	ServerTime time.Duration
	// ClientTime is the client leg: request head written upstream to response fully
	// read; zero if no upstream request was made.
	ClientTime time.Duration
	// Failed is set when the upstream could not be reached or broke off.
	Failed  bool
	TraceID spans.TraceID // zero unless the request was sampled
	// Sampling says what became of the request's own sampling headers: a
	// forced trace started or refused, an untrusted client's ignored.
	Sampling spans.Outcome
	// UpstreamDiscarded is set when the upstream HTTP/1 connection was closed
	// instead of reused because it held bytes beyond the response.
	UpstreamDiscarded bool
}

// Legs returns the leg names ServerTime and ClientTime belong to.
func (s RequestStats) Legs() (server, client spans.Leg) { return s.Direction.Legs() }

// FlowStats describes one client connection.
type FlowStats struct {
	ID        uint64
	Direction Direction
	Peer      netip.AddrPort // the connecting client
	Dst       netip.AddrPort // the original destination
	Protocol  Protocol
	Start     time.Time
	End       time.Time // zero while open
	Requests  int64
	BytesIn   int64 // read from the client
	BytesOut  int64 // written to the client
	// ServerTime and ClientTime are the legs' times summed over Requests; divide
	// for the mean.
	ServerTime  time.Duration
	ClientTime  time.Duration
	LastTraceID spans.TraceID // the most recent sampled request's trace
	// IdleClosed is set when the proxy closed the connection because neither
	// side sent anything for Config.SpliceIdleTimeout.
	IdleClosed bool
	// ProtocolErrors counts the client's breaches of HTTP: malformed HTTP/1
	// requests (answered 4xx/5xx, then the connection closes) and HTTP/2
	// stream and connection errors (RST_STREAM, GOAWAY).
	ProtocolErrors int64
}

// flow is the live state of one client connection. Counters are atomic: the
// HTTP/2 server and splices update them from several goroutines while Flows reads.
type flow struct {
	id       uint64
	dir      Direction
	peer     netip.AddrPort
	dst      netip.AddrPort
	start    time.Time
	conn     net.Conn                 // the accepted socket, closed by Close and Shutdown
	upstream atomic.Pointer[net.Conn] // the HTTP/1 upstream in use, closed by Close too
	proto    atomic.Uint32
	idle     atomic.Bool  // an HTTP/1 connection between requests
	silent   atomic.Bool  // closed by the splice idle timeout
	breaches atomic.Int64 // FlowStats.ProtocolErrors
	requests atomic.Int64
	in, out  atomic.Int64
	srvNanos atomic.Int64
	cliNanos atomic.Int64
	trace    lastTrace
	peerStr  atomic.Pointer[string] // peerAddr, made on first use
	dstStr   atomic.Pointer[string] // dstAddr, made on first use

	untrusted bool // the client is outside the mesh: its sampling headers do not count
}

func (f *flow) setProtocol(p Protocol) { f.proto.Store(uint32(p)) }

// peerAddr and dstAddr are the flow's addresses as span attributes want them,
// made once per connection, not per span. Several HTTP/2 streams may ask at
// once: the first answer is kept, the others are equal.
func (f *flow) peerAddr() string { return cachedAddr(&f.peerStr, f.peer.Addr()) }
func (f *flow) dstAddr() string  { return cachedAddr(&f.dstStr, f.dst.Addr()) }

func cachedAddr(p *atomic.Pointer[string], a netip.Addr) string {
	if s := p.Load(); s != nil {
		return *s
	}
	s := a.String()
	p.CompareAndSwap(nil, &s)
	return s
}

func (f *flow) stats() FlowStats {
	s := FlowStats{
		ID:         f.id,
		Direction:  f.dir,
		Peer:       f.peer,
		Dst:        f.dst,
		Protocol:   Protocol(f.proto.Load()),
		Start:      f.start,
		Requests:   f.requests.Load(),
		BytesIn:    f.in.Load(),
		BytesOut:   f.out.Load(),
		ServerTime: time.Duration(f.srvNanos.Load()),
		ClientTime: time.Duration(f.cliNanos.Load()),
		IdleClosed: f.silent.Load(),

		ProtocolErrors: f.breaches.Load(),
	}
	s.LastTraceID = f.trace.load()
	return s
}

// lastTrace is the trace id of a flow's last sampled request. A mutex, not an
// atomic pointer: storing through one allocated 16 bytes per sampled request,
// and only the flow's own requests and a stats reader ever take it.
type lastTrace struct {
	mu sync.Mutex
	id spans.TraceID
}

func (t *lastTrace) store(id spans.TraceID) {
	t.mu.Lock()
	t.id = id
	t.mu.Unlock()
}

func (t *lastTrace) load() spans.TraceID {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id
}

// countingConn counts the bytes of a client connection into its flow.
type countingConn struct {
	net.Conn
	fl *flow
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.fl.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.fl.out.Add(int64(n))
	return n, err
}

// CloseWrite passes half-closes through, which splices rely on.
func (c *countingConn) CloseWrite() error { return closeWrite(c.Conn) }

// SyscallConn exposes the socket beneath, for waiting on it without reading.
func (c *countingConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("not a socket")
}
