package proxy

// The HTTP/2 relay: one upstream connection per client connection, frames passed
// through as they are except request header blocks, which are decoded, given their
// trace context and re-encoded.
//
// Terminating HTTP/2 on both sides (x/net's Server and Transport) cost about three
// times the CPU of HTTP/1 per gRPC call: a goroutine per frame write, one per
// request, and the wake-ups between them. With the connections paired 1:1, stream
// ids, SETTINGS and their ACKs, WINDOW_UPDATE, PING, PRIORITY, RST_STREAM, GOAWAY
// and DATA mean the same on both sides, so they go through untouched: flow control
// stays end to end and nothing is buffered beyond a frame. Two goroutines per
// connection each read one direction and write the other, flushing only when their
// input has nothing more buffered, so back-to-back frames leave in one write.
//
// Frames are parsed by h2wire.go, not with x/net's Framer: only header blocks and
// SETTINGS need their payload read, and everything else (DATA above all) is copied from the
// reader's buffer to the writer's without being materialised as a frame.
// BenchmarkH2FrameRelay compares the two.
//
// HPACK: the client's encoder pairs with our request decoder and our encoder with
// the upstream's decoder. Responses pass raw, so the upstream's encoder pairs with
// the client's decoder; a second decoder follows along to read statuses, and the
// few header blocks the relay writes to the client itself use only the static table
// and literals without indexing, which leave the client's dynamic table as the
// upstream's encoder believes it is.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hoptrace/hoptrace/spans"
)

// Upstream connections are health-checked with pings after this much silence
// with streams open, so a dead peer fails requests instead of hanging them (the
// terminating path's transport does the same). Variables only so that tests can
// shorten them.
var (
	h2ReadIdleTimeout = 30 * time.Second
	h2PingTimeout     = 10 * time.Second
)

const (
	// h2MaxStreams bounds the streams a client may have open at once, on both
	// HTTP/2 paths.
	h2MaxStreams = 1000
	// h2TableSize is HPACK's initial dynamic table size, and the most our own
	// encoder ever uses.
	h2TableSize = 4096
	// h2TableCap bounds the dynamic table either peer may make the other keep: a
	// larger SETTINGS_HEADER_TABLE_SIZE is lowered on its way through, so neither
	// our decoders nor the peers' grow beyond it.
	h2TableCap = 64 << 10
	// h2MaxSettingsLen bounds a SETTINGS payload; there are a handful of settings.
	h2MaxSettingsLen = 16 << 10
	// h2MaxResponseBlock bounds a response header block (all its frames), which
	// is held whole so that nothing the relay writes can land inside it.
	h2MaxResponseBlock = 1 << 20
	// h2Linger is how long a closing connection keeps reading its client, so
	// that the client sees the last frames instead of a reset.
	h2Linger = time.Second
	// h2BreakGrace is how long the upstream may take to finish a frame being
	// relayed when the client broke the protocol, so that the client does not
	// get half a frame after its GOAWAY.
	h2BreakGrace = 100 * time.Millisecond
	// h2MaxLocal bounds the streams answered by the relay itself that the client
	// may still send frames on.
	h2MaxLocal = 128
)

// serveH2 relays an HTTP/2 connection whose preface br holds. When the upstream
// cannot be reached, or does not answer the preface with its SETTINGS, the
// connection is served by the terminating path instead, which answers every
// stream itself (503 or 502, or gRPC UNAVAILABLE) and keeps trying the upstream
// for each new one, as before the relay: a client is not made to reconnect in a
// loop to an upstream that will never speak HTTP/2.
//
// uc, when not nil, is an upstream connection dialed already (detectLate).
func (p *Proxy) serveH2(c net.Conn, br *bufio.Reader, fl *flow, dst netip.AddrPort, uc net.Conn) {
	var err error
	if uc == nil {
		uc, err = p.dial(context.Background(), dst.String())
	}
	if err != nil {
		p.log.Debug("http/2 upstream unreachable, answering locally", "dst", dst, "err", err)
		p.serveH2Terminated(c, take(br), fl, dst)
		return
	}
	fl.upstream.Store(&uc) // Close closes it too
	r := newH2Relay(p, fl, dst, c, br, uc)
	fallback := r.run()
	r.release()
	if fallback {
		p.log.Debug("http/2 upstream did not answer the preface, answering locally", "dst", dst, "err", r.spokeErr)
		fl.upstream.Store(nil)
		c.SetReadDeadline(time.Time{})
		prefix := append([]byte(h2Preface), r.firstFrame...)
		p.serveH2Terminated(c, append(prefix, take(br)...), fl, dst)
	}
}

// h2BreakHook, when set (tests only), runs in clientDone once the client is
// marked broken, to hold the relay at that point.
var h2BreakHook func(*h2Relay)

// h2DrainHook, when set (tests only), runs in drain between claiming the
// GOAWAY and sending it.
var h2DrainHook func(*h2Relay)

var (
	errH2Fallback       = errors.New("upstream does not speak HTTP/2")
	errH2ClientReset    = errors.New("client reset the stream")
	errH2UpstreamGoAway = errors.New("upstream went away before processing the stream")
	errH2UpstreamSilent = errors.New("upstream did not answer a ping")
	errH2ClientBroke    = errors.New("client broke the protocol")
)

// h2Stream is a request in flight on a relayed connection.
type h2Stream struct {
	l         legs
	id        uint32
	grpc      bool
	responded bool  // a final response head went to the client
	window    int64 // what the upstream may still send on it, as the client granted (under r.mu)
}

var h2StreamPool = sync.Pool{New: func() any { return new(h2Stream) }}

// h2Relay is one client connection and its upstream connection. Its state is
// grouped by who owns it (docs/proxy.md, "The HTTP/2 relay's goroutines"): up
// belongs to toUpstream, run's goroutine, which reads cr and writes uw; down
// to toClient, which reads ur and writes cw; other goroutines (timers, a
// stream answered locally, Shutdown's GOAWAY) only add whole frames through
// h2Out.send. What more than one touches is atomic, a channel, or under mu.
type h2Relay struct {
	p      *Proxy
	fl     *flow
	dst    netip.AddrPort
	cc, uc net.Conn
	cr, ur *bufio.Reader // read by toUpstream and toClient alone
	cw, uw h2Out         // toward the client and toward the upstream

	// Settings seen passing by, for the other direction's goroutine.
	upFrameSize   atomic.Uint32 // the upstream's latest MAX_FRAME_SIZE: our header blocks are cut to it
	upFrameMax    atomic.Uint32 // largest frame the upstream may send: the client's largest MAX_FRAME_SIZE
	upTableSize   atomic.Uint32 // the upstream decoder's HEADER_TABLE_SIZE: our encoder's limit
	reqTableMax   atomic.Uint32 // what the client's encoder may use, as forwarded: our request decoder's limit
	respTableMax  atomic.Uint32 // what the upstream's encoder may use, as forwarded: our response decoder's limit
	upWriteFailed atomic.Bool

	// Upstream liveness (checkLive): the upstream is pinged after a silence with
	// streams open, and dropped when the ping goes unanswered.
	upRead   atomic.Int64 // when bytes last arrived from the upstream after a wait (unix ns)
	pingSent atomic.Int64 // when our unanswered ping went out (unix ns), or 0
	pingData uint64       // our pings' payload: their ACKs are not the client's
	upSilent atomic.Bool  // the upstream was dropped for not answering

	liveTimer  *time.Timer
	pingAfter  time.Duration
	pingWithin time.Duration

	// Before relaying streams, the upstream must answer with its SETTINGS:
	// toClient closes spoke once it knows (upSpoke, spokeErr), and waits for
	// toUpstream to close decided (fallback) if it did not.
	spoke, decided chan struct{}
	upSpoke        bool
	spokeErr       error
	fallback       bool
	decidedClosed  bool
	firstFrame     []byte // the client's SETTINGS as it came, for the fallback

	up   h2UpState   // toUpstream's goroutine's alone
	down h2DownState // toClient's goroutine's alone

	// Shared by both directions' goroutines and the timers, under mu.
	mu            sync.Mutex
	streams       map[uint32]*h2Stream
	connWindow    int64             // what the upstream may still send on the connection, as the client granted
	upEvents      []h2UpstreamEvent // for the client goroutine (pollUpstream)
	upEventsSpare []h2UpstreamEvent
	upPending     atomic.Bool
	maxSeen       uint32         // highest stream forwarded upstream; written by the client goroutine only
	refuseAbove   uint32         // streams above it are not forwarded: the client was told by a GOAWAY
	goAwayLast    uint32         // lowest last-stream-id the client has been sent
	sentGoAway    bool           // the relay itself sent the client a GOAWAY
	drainSend     sync.WaitGroup // drain's GOAWAY, claimed under mu and sent after it
	draining      bool
	closing       bool // the connection is going down: no new streams
	clientGone    bool
	idleSince     time.Time
	idle          *time.Timer
}

// h2UpState is what the goroutine relaying client to upstream (toUpstream)
// owns: request decoding and re-encoding, and the client's view of its streams.
type h2UpState struct {
	reqDec          *hpack.Decoder
	enc             *hpack.Encoder
	encBuf          bytes.Buffer
	reqTable        uint32 // limits applied to reqDec and enc
	encTable        uint32
	reqFields       []hpack.HeaderField
	prio            [5]byte // the request's priority fields, passed on
	prioLen         int
	reqSize         uint32
	reqTruncated    bool
	reqInvalid      bool
	maxHeaderList   uint32
	lastClientID    uint32                    // highest stream the client opened, forwarded or not
	local           map[uint32]struct{}       // streams answered here that the client may still send on
	open            map[uint32]h2ClientStream // forwarded streams the client may still send on (h2validate.go)
	closedRing      [h2RecentClosed]uint32    // streams whose client half closed last
	closedNext      int
	initialWindow   int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	reqLength       int64 // the request's content-length, or -1
	opened          int   // streams forwarded, and those of them the client reset early: rapid reset
	prematureResets int
	hdr             fieldMap // the request's trace and captured headers, for the legs machinery
	cscratch        []byte
	cframes         []byte
}

// h2DownState is what the goroutine relaying upstream to client (toClient)
// owns: response decoding, for statuses and captured headers.
type h2DownState struct {
	respDec      *hpack.Decoder
	respTable    uint32
	resp         h2ResponseHead
	respHdr      http.Header
	block        []byte
	settingsSent bool // the upstream's first SETTINGS went to the client
	uscratch     []byte
	ended        []h2Ended
}

// h2ResponseHead is what the relay reads from a response header block.
type h2ResponseHead struct {
	status     int // 0: none (trailers)
	grpcStatus int // -1: none
	grpcMsg    string
	captured   []hpack.HeaderField
}

func newH2Relay(p *Proxy, fl *flow, dst netip.AddrPort, cc net.Conn, cr *bufio.Reader, uc net.Conn) *h2Relay {
	r := &h2Relay{
		p: p, fl: fl, dst: dst, cc: cc, uc: uc, cr: cr,
		ur: getReader(uc),
		up: h2UpState{
			maxHeaderList: uint32(p.cfg.MaxHeaderBytes) + 10*32, // as x/net's server: 32 bytes per field, ~10 fields
			reqTable:      h2TableSize,
			encTable:      h2TableSize,
			open:          make(map[uint32]h2ClientStream),
			initialWindow: h2InitialWindow,
		},
		down:        h2DownState{respTable: h2TableSize},
		streams:     make(map[uint32]*h2Stream),
		connWindow:  h2InitialWindow,
		refuseAbove: h2MaxStreamID,
		goAwayLast:  h2MaxStreamID,
		idleSince:   time.Now(),
		pingData:    rand.Uint64(),
		pingAfter:   h2ReadIdleTimeout,
		pingWithin:  h2PingTimeout,
	}
	r.upRead.Store(time.Now().UnixNano())
	r.spoke, r.decided = make(chan struct{}), make(chan struct{})
	r.cw.bw = getWriter(cc)
	r.uw.bw = getWriter(uc)
	r.cw.gated = true
	r.upFrameSize.Store(h2MinFrameSize)
	r.upFrameMax.Store(h2MinFrameSize)
	r.upTableSize.Store(h2TableSize)
	r.reqTableMax.Store(h2TableSize)
	r.respTableMax.Store(h2TableSize)
	r.up.reqDec = hpack.NewDecoder(h2TableSize, r.requestField)
	r.up.reqDec.SetMaxStringLength(int(r.up.maxHeaderList))
	r.down.respDec = hpack.NewDecoder(h2TableSize, r.responseField)
	r.up.enc = hpack.NewEncoder(&r.up.encBuf)
	return r
}

// run relays until both directions are done: this goroutine carries the client's
// frames upstream, toClient the upstream's back. It reports whether the upstream
// failed to speak HTTP/2 before anything but the client's preface and SETTINGS
// went to it, which the terminating path can take over.
func (r *h2Relay) run() (fallback bool) {
	if !r.p.h2relays.track(r.p, r, true) {
		return false // shutting down
	}
	defer r.p.h2relays.track(r.p, r, false)
	r.mu.Lock()
	r.idle = time.AfterFunc(r.p.cfg.IdleTimeout, r.checkIdle)
	r.liveTimer = time.AfterFunc(r.pingAfter, r.checkLive)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.idle.Stop()
		r.liveTimer.Stop()
		r.mu.Unlock()
	}()
	// A server sends its SETTINGS at once: one that does not is not HTTP/2.
	r.uc.SetReadDeadline(time.Now().Add(r.p.cfg.HeaderTimeout))
	done := make(chan struct{})
	go r.toClient(done)
	err := r.toUpstream()
	if errors.Is(err, errH2Fallback) {
		<-done
		return true
	}
	r.decide(false)
	r.clientDone(err)
	var ce *h2ConnError
	if errors.As(err, &ce) {
		// Linger, so the client reads its GOAWAY before the close: toClient's
		// end sets the deadline.
		io.Copy(io.Discard, r.cr)
	}
	<-done
	return false
}

// decide tells toClient, waiting after the upstream failed to speak, whether the
// terminating path takes over; toUpstream's goroutine only.
func (r *h2Relay) decide(fallback bool) {
	if !r.decidedClosed {
		r.decidedClosed, r.fallback = true, fallback
		close(r.decided)
	}
}

// release returns the buffers; nothing may write after it.
func (r *h2Relay) release() {
	r.uc.Close()
	for _, o := range []*h2Out{&r.cw, &r.uw} {
		o.mu.Lock()
		putWriter(o.bw)
		o.bw = nil
		o.mu.Unlock()
	}
	putReader(r.ur)
	r.ur = nil
}

// ---- client to upstream ----

// toUpstream relays the client's frames upstream until the client connection
// ends or breaks the protocol.
func (r *h2Relay) toUpstream() error {
	br, o := r.cr, &r.uw
	o.own()
	if err := copyN(br, o, len(h2Preface)); err != nil {
		return err
	}
	// The preface and the client's first frame (its SETTINGS) go upstream, and
	// nothing more until the upstream answered with its own. The frame is kept for
	// the terminating path, should the upstream not answer.
	fh, err := r.nextClientFrame()
	if err != nil {
		return err
	}
	if n := h2FrameHeaderLen + int(fh.length); fh.typ == http2.FrameSettings && n <= br.Size() {
		if b, err := br.Peek(n); err == nil {
			r.firstFrame = append(r.firstFrame[:0], b...)
		}
	}
	if err := r.clientFrame(fh); err != nil {
		return err
	}
	if err := o.release(); err != nil {
		r.upstreamWriteFailed()
	}
	<-r.spoke
	if !r.upSpoke {
		r.decide(r.firstFrame != nil)
		if r.fallback {
			return errH2Fallback
		}
	}
	o.own()
	for {
		fh, err := r.nextClientFrame()
		if err != nil {
			return err
		}
		if err := r.clientFrame(fh); err != nil {
			return err
		}
	}
}

// nextClientFrame reads the next frame header from the client.
func (r *h2Relay) nextClientFrame() (h2FrameHeader, error) {
	fh, err := readH2FrameHeader(r.cr, &r.uw)
	if _, ok := err.(*h2WriteError); ok {
		r.upstreamWriteFailed()
		fh, err = readH2FrameHeader(r.cr, &r.uw)
	}
	if err == nil && fh.length > h2MinFrameSize { // all the relay announces (upstreamSettings)
		err = h2Error(http2.ErrCodeFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE")
	}
	return fh, err
}

// clientFrame relays one frame from the client.
func (r *h2Relay) clientFrame(fh h2FrameHeader) error {
	br, o := r.cr, &r.uw
	r.pollUpstream()
	var err error
	switch fh.typ {
	case http2.FrameData:
		err = r.clientData(fh)
	case http2.FrameHeaders:
		err = r.clientHeaders(fh)
	case http2.FrameRSTStream:
		err = r.clientReset(fh)
	case http2.FrameSettings:
		err = r.clientSettings(fh)
	case http2.FrameWindowUpdate:
		err = r.clientWindowUpdate(fh)
	case http2.FramePriority:
		err = r.clientPriority(fh)
	case http2.FrameContinuation:
		err = h2Error(http2.ErrCodeProtocol, "CONTINUATION without HEADERS")
	case http2.FramePushPromise:
		err = h2Error(http2.ErrCodeProtocol, "PUSH_PROMISE from a client")
	case http2.FramePing:
		if err = checkPing(fh); err == nil {
			err = copyN(br, o, h2FrameHeaderLen+int(fh.length))
		}
	case http2.FrameGoAway:
		if err = checkGoAway(fh); err == nil {
			err = copyN(br, o, h2FrameHeaderLen+int(fh.length))
		}
	default: // extensions
		err = copyN(br, o, h2FrameHeaderLen+int(fh.length))
	}
	return err
}

// upstreamWriteFailed notes that the upstream cannot be written to: toClient is
// woken to end the streams, and what the client still sends goes nowhere until
// the connection is closed.
func (r *h2Relay) upstreamWriteFailed() {
	if r.upWriteFailed.CompareAndSwap(false, true) {
		r.uc.Close()
	}
	r.uw.mu.Lock()
	r.uw.bw.Reset(io.Discard)
	r.uw.mu.Unlock()
}

// dropped reports whether a stream never reached the upstream, so its frames
// must not either.
func (r *h2Relay) dropped(id uint32) bool {
	if id > r.maxSeen {
		return true
	}
	_, ok := r.up.local[id]
	return ok
}

func (r *h2Relay) clientData(fh h2FrameHeader) error {
	br, o := r.cr, &r.uw
	end := fh.flags.Has(http2.FlagDataEndStream)
	n, err := r.checkData(fh)
	if err != nil {
		return err
	}
	id := fh.stream
	cs, open := r.up.open[id]
	if !open {
		if r.dropped(id) {
			// Answered here, or refused: the upstream never sees these
			// bytes and so never gives the connection window back for them.
			if end {
				delete(r.up.local, id)
			}
			return r.discardFrame(fh)
		}
		// The client's half of the stream is closed (RFC 9113 §5.1, §6.1).
		if err := r.discardFrame(fh); err != nil {
			return err
		}
		return r.clientStreamError(id, http2.ErrCodeStreamClosed, "DATA after the end of the stream")
	}
	if cs.declared >= 0 {
		// A content-length that the DATA does not add up to makes the request
		// malformed (RFC 9113 §8.1.1): it must not reach the upstream whole.
		cs.received += n
		if cs.received > cs.declared || end && cs.received != cs.declared {
			if err := r.discardFrame(fh); err != nil {
				return err
			}
			return r.clientStreamError(id, http2.ErrCodeProtocol, "DATA does not match content-length")
		}
		r.up.open[id] = cs
	}
	if end {
		delete(r.up.open, id)
		r.recordClosed(id)
	}
	if err := copyN(br, o, h2FrameHeaderLen+int(fh.length)); err != nil {
		return err
	}
	if end {
		now := time.Now()
		r.mu.Lock()
		if st := r.streams[fh.stream]; st != nil {
			st.l.sent = now
		}
		r.mu.Unlock()
	}
	return nil
}

// sendClient sends frames the relay makes itself to the client.
func (r *h2Relay) sendClient(frames []byte) error {
	if !r.cw.send(frames) {
		return h2Error(http2.ErrCodeEnhanceYourCalm, "too many streams answered locally")
	}
	return nil
}

func (r *h2Relay) clientReset(fh h2FrameHeader) error {
	if err := checkReset(fh, ""); err != nil {
		return err
	}
	id := fh.stream
	if r.idleStream(id) {
		return h2Error(http2.ErrCodeProtocol, "RST_STREAM on an idle stream") // §6.4
	}
	if _, ok := r.up.open[id]; ok {
		delete(r.up.open, id)
		r.recordClosed(id)
	}
	if err := r.countReset(id, time.Now()); err != nil {
		return err
	}
	if r.dropped(fh.stream) {
		delete(r.up.local, fh.stream)
		r.cr.Discard(h2FrameHeaderLen)
		return discardN(r.cr, &r.uw, 4)
	}
	return r.relayReset(fh, r.cr, &r.uw, "client", func(code http2.ErrCode) error {
		return fmt.Errorf("%w (%v)", errH2ClientReset, code)
	})
}

// checkReset rejects a malformed RST_STREAM; from names the sender in the error.
func checkReset(fh h2FrameHeader, from string) error {
	switch {
	case fh.length != 4:
		return h2Error(http2.ErrCodeFrameSize, from+"RST_STREAM length")
	case fh.stream == 0:
		return h2Error(http2.ErrCodeProtocol, from+"RST_STREAM on stream 0")
	}
	return nil
}

// relayReset passes a RST_STREAM on from br to o and ends the stream's legs
// with a failure of kind, why the reset's error code.
func (r *h2Relay) relayReset(fh h2FrameHeader, br *bufio.Reader, o *h2Out, kind string, why func(http2.ErrCode) error) error {
	b, err := br.Peek(h2FrameHeaderLen + 4)
	if err != nil {
		return err
	}
	code := http2.ErrCode(binary.BigEndian.Uint32(b[h2FrameHeaderLen:]))
	if err := copyN(br, o, len(b)); err != nil {
		return err
	}
	now := time.Now()
	if st := r.take(fh.stream, now); st != nil {
		st.l.fail(kind, why(code))
		r.finish(st, now)
	}
	return nil
}

func (r *h2Relay) clientSettings(fh h2FrameHeader) error {
	br, o := r.cr, &r.uw
	payload, err := r.readSettings(fh, br, o, &r.up.cscratch)
	if err != nil || payload == nil {
		return err
	}
	payload, initial, err := checkSettings(payload)
	if err != nil {
		return err
	}
	if initial >= 0 {
		if err := r.applyInitialWindow(initial); err != nil {
			return err
		}
	}
	for i := 0; i < len(payload); i += 6 {
		v := binary.BigEndian.Uint32(payload[i+2:])
		switch http2.SettingID(binary.BigEndian.Uint16(payload[i:])) {
		case http2.SettingHeaderTableSize:
			// The client's decoder: the upstream's encoder, and our response
			// decoder following it, may use this much.
			v = min(v, h2TableCap)
			binary.BigEndian.PutUint32(payload[i+2:], v)
			r.respTableMax.Store(v)
		case http2.SettingMaxFrameSize:
			raiseTo(&r.upFrameMax, v)
		}
	}
	o.writeHeader(len(payload), http2.FrameSettings, fh.flags, 0)
	o.bw.Write(payload)
	return nil
}

// readSettings reads a SETTINGS payload into *scratch after checking the frame;
// an ACK is relayed at once and gives a nil payload.
func (r *h2Relay) readSettings(fh h2FrameHeader, br *bufio.Reader, o *h2Out, scratch *[]byte) ([]byte, error) {
	switch {
	case fh.stream != 0:
		return nil, h2Error(http2.ErrCodeProtocol, "SETTINGS on a stream")
	case fh.flags.Has(http2.FlagSettingsAck):
		if fh.length != 0 {
			return nil, h2Error(http2.ErrCodeFrameSize, "SETTINGS ACK with a payload")
		}
		return nil, copyN(br, o, h2FrameHeaderLen)
	case fh.length%6 != 0:
		return nil, h2Error(http2.ErrCodeFrameSize, "SETTINGS length")
	case fh.length > h2MaxSettingsLen:
		return nil, h2Error(http2.ErrCodeEnhanceYourCalm, "SETTINGS too large")
	}
	br.Discard(h2FrameHeaderLen)
	// Room for two settings the relay may add.
	*scratch = grow(*scratch, int(fh.length)+12)
	payload := (*scratch)[:fh.length]
	return payload, readFull(br, o, payload)
}

// raiseTo raises a to v if v is a valid frame size above it.
func raiseTo(a *atomic.Uint32, v uint32) {
	if v < h2MinFrameSize || v > h2MaxFrameSize {
		return // the receiving peer rejects it
	}
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// ---- upstream to client ----

// toClient relays the upstream's frames to the client until either connection
// ends, then ends the streams still open.
func (r *h2Relay) toClient(done chan<- struct{}) {
	defer close(done)
	err := r.relayResponses()
	if r.upSilent.Load() {
		err = errH2UpstreamSilent
	}
	if !r.upSpoke {
		r.spokeErr = err
		// toUpstream decides once it has the client's first frame; a client
		// that does not send one is not waited for long.
		r.cc.SetReadDeadline(time.Now().Add(h2Linger))
		close(r.spoke)
		<-r.decided
		if r.fallback {
			return // nothing went to the client: the terminating path serves it
		}
	}
	r.upstreamDone(err)
}

func (r *h2Relay) relayResponses() error {
	br, o := r.ur, &r.cw
	if !o.own() {
		return errH2ClientBroke
	}
	first := true
	for {
		if o.done() { // the client had its GOAWAY: upstreamDone writes it
			return errH2ClientBroke
		}
		if br.Buffered() < h2FrameHeaderLen {
			if err := o.release(); err != nil {
				return &h2WriteError{err}
			}
			// Spans are made once the responses are on their way, not before.
			r.finishEnded()
			_, err := br.Peek(h2FrameHeaderLen)
			if !o.own() {
				return errH2ClientBroke // not even the frame that woke us
			}
			if err != nil {
				return err
			}
			// Stamped when the upstream made us wait, not per frame: frames
			// that were buffered already prove it alive as well.
			r.upRead.Store(time.Now().UnixNano())
		}
		b, _ := br.Peek(h2FrameHeaderLen)
		fh := parseH2FrameHeader(b)
		if first {
			if fh.typ != http2.FrameSettings || fh.flags.Has(http2.FlagSettingsAck) || fh.length > h2MaxSettingsLen {
				return h2Error(http2.ErrCodeProtocol, "upstream did not start with SETTINGS: not HTTP/2")
			}
			r.uc.SetReadDeadline(time.Time{})
			r.upSpoke = true
			close(r.spoke)
			first = false
		}
		if fh.length > r.upFrameMax.Load() {
			return h2Error(http2.ErrCodeFrameSize, "upstream frame larger than the client allows")
		}
		var err error
		switch fh.typ {
		case http2.FrameData:
			if err = copyN(br, o, h2FrameHeaderLen+int(fh.length)); err != nil {
				break
			}
			r.upstreamData(fh)
		case http2.FrameHeaders, http2.FramePushPromise:
			err = r.upstreamHeaders(fh)
		case http2.FrameSettings:
			err = r.upstreamSettings(fh)
		case http2.FrameRSTStream:
			err = r.upstreamReset(fh)
		case http2.FrameGoAway:
			err = r.upstreamGoAway(fh)
		case http2.FrameContinuation:
			err = h2Error(http2.ErrCodeProtocol, "upstream sent CONTINUATION without HEADERS")
		case http2.FramePing:
			if r.ourPingAck(fh) {
				err = discardN(br, o, h2FrameHeaderLen+8)
				break
			}
			err = copyN(br, o, h2FrameHeaderLen+int(fh.length))
		default: // WINDOW_UPDATE, PRIORITY, extensions
			err = copyN(br, o, h2FrameHeaderLen+int(fh.length))
		}
		if err != nil {
			return err
		}
	}
}

// upstreamData accounts for a DATA frame relayed to the client: the flow-control
// windows it took, and the stream it ended.
func (r *h2Relay) upstreamData(fh h2FrameHeader) {
	n := int64(fh.length)
	end := fh.flags.Has(http2.FlagDataEndStream)
	var now time.Time
	if end {
		now = time.Now()
	}
	r.mu.Lock()
	r.connWindow -= n
	st := r.streams[fh.stream]
	drained := false
	if st != nil {
		st.window -= n
		if end {
			r.responseEndedLocked(st)
			drained = r.removeLocked(fh.stream, now)
		}
	}
	r.mu.Unlock()
	if drained {
		r.uc.Close() // toClient's end half-closes the client
	}
	if st != nil && end {
		st.l.cliEnd = now
		r.down.ended = append(r.down.ended, h2Ended{st, now})
	}
}

// upstreamHeaders relays a response header block (HEADERS or PUSH_PROMISE and
// their CONTINUATIONs) as it came, decoding it on the way.
func (r *h2Relay) upstreamHeaders(fh h2FrameHeader) error {
	br, o := r.ur, &r.cw
	read := time.Now()
	if fh.stream == 0 {
		return h2Error(http2.ErrCodeProtocol, "upstream HEADERS on stream 0")
	}
	if v := r.respTableMax.Load(); v != r.down.respTable {
		r.down.respDec.SetAllowedMaxDynamicTableSize(v)
		r.down.respTable = v
	}
	r.down.resp = h2ResponseHead{grpcStatus: -1, captured: r.down.resp.captured[:0]}
	if h2FrameHeaderLen+int(fh.length) > h2MaxResponseBlock {
		return h2Error(http2.ErrCodeFrameSize, "upstream header block too large")
	}
	r.down.block = grow(r.down.block, h2FrameHeaderLen+int(fh.length))
	if err := readFull(br, o, r.down.block); err != nil {
		return err
	}
	frag, _, err := headerFragment(fh, r.down.block[h2FrameHeaderLen:])
	if err != nil {
		return err
	}
	if _, err := r.down.respDec.Write(frag); err != nil {
		return h2Error(http2.ErrCodeCompression, "upstream header block: "+err.Error())
	}
	for flags := fh.flags; !flags.Has(http2.FlagHeadersEndHeaders); { // same bit for PUSH_PROMISE
		next, err := peekH2FrameHeader(br, o)
		if err != nil {
			return err
		}
		if next.typ != http2.FrameContinuation || next.stream != fh.stream {
			return h2Error(http2.ErrCodeProtocol, "upstream header block interrupted")
		}
		if next.length > r.upFrameMax.Load() || len(r.down.block)+h2FrameHeaderLen+int(next.length) > h2MaxResponseBlock {
			return h2Error(http2.ErrCodeFrameSize, "upstream header block too large")
		}
		start := len(r.down.block)
		r.down.block = slices.Grow(r.down.block, h2FrameHeaderLen+int(next.length))[:start+h2FrameHeaderLen+int(next.length)]
		if err := readFull(br, o, r.down.block[start:]); err != nil {
			return err
		}
		if _, err := r.down.respDec.Write(r.down.block[start+h2FrameHeaderLen:]); err != nil {
			return h2Error(http2.ErrCodeCompression, "upstream header block: "+err.Error())
		}
		flags = next.flags
	}
	if err := r.down.respDec.Close(); err != nil {
		return h2Error(http2.ErrCodeCompression, "upstream header block: "+err.Error())
	}
	o.bw.Write(r.down.block)
	if fh.typ == http2.FramePushPromise {
		return nil
	}
	r.response(fh.stream, fh.flags.Has(http2.FlagHeadersEndStream), read, time.Now())
	return nil
}

// responseField notes what spans say about a response.
func (r *h2Relay) responseField(f hpack.HeaderField) {
	switch f.Name {
	case ":status":
		r.down.resp.status, _ = strconv.Atoi(f.Value)
	case "grpc-status":
		if n, err := strconv.Atoi(f.Value); err == nil {
			r.down.resp.grpcStatus = n
		}
	case "grpc-message":
		r.down.resp.grpcMsg = f.Value
	default:
		if len(r.p.tr.capture) > 0 {
			r.down.resp.captured = append(r.down.resp.captured, f)
		}
	}
}

// response applies a response header block, forwarded at written, to its stream.
func (r *h2Relay) response(id uint32, end bool, read, written time.Time) {
	r.mu.Lock()
	st := r.streams[id]
	if st == nil {
		r.mu.Unlock()
		return
	}
	l := &st.l
	if l.firstByte.IsZero() {
		l.firstByte = read
	}
	if rs := &r.down.resp; rs.status >= 200 {
		l.status = rs.status
		if !st.responded {
			st.responded = true
			l.respHeader = written
		}
	}
	if st.grpc && r.down.resp.grpcStatus >= 0 {
		l.grpcStatus, l.grpcMsg = r.down.resp.grpcStatus, r.down.resp.grpcMsg
	}
	if l.sampled && len(r.down.resp.captured) > 0 {
		l.resAttrs = r.captureResponse(l.resAttrs)
	}
	if !end {
		r.mu.Unlock()
		return
	}
	r.responseEndedLocked(st)
	drained := r.removeLocked(id, written)
	r.mu.Unlock()
	if drained {
		r.uc.Close()
	}
	l.cliEnd = read
	r.down.ended = append(r.down.ended, h2Ended{st, written})
}

// h2Ended is a stream whose response went to the client at end, to be finished
// once it has been flushed.
type h2Ended struct {
	st  *h2Stream
	end time.Time
}

func (r *h2Relay) finishEnded() {
	for i, e := range r.down.ended {
		r.finish(e.st, e.end)
		r.down.ended[i] = h2Ended{}
	}
	r.down.ended = r.down.ended[:0]
}

func (r *h2Relay) captureResponse(dst []spans.Attr) []spans.Attr {
	if r.down.respHdr == nil {
		r.down.respHdr = make(http.Header)
	}
	clear(r.down.respHdr)
	for _, f := range r.down.resp.captured {
		for _, c := range r.p.tr.capture {
			if c.field == f.Name {
				r.down.respHdr[c.key] = append(r.down.respHdr[c.key], f.Value)
			}
		}
	}
	return r.p.tr.captureHeaders(dst, r.down.respHdr, false)
}

func (r *h2Relay) upstreamSettings(fh h2FrameHeader) error {
	br, o := r.ur, &r.cw
	payload, err := r.readSettings(fh, br, o, &r.down.uscratch)
	if err != nil || payload == nil {
		return err
	}
	haveStreams, haveList := false, false
	for i := 0; i < len(payload); i += 6 {
		v := binary.BigEndian.Uint32(payload[i+2:])
		switch http2.SettingID(binary.BigEndian.Uint16(payload[i:])) {
		case http2.SettingHeaderTableSize:
			// The upstream's decoder: our encoder may use this much, and the
			// client's encoder, followed by our request decoder, what we pass on.
			r.upTableSize.Store(v)
			v = min(v, h2TableCap)
			r.reqTableMax.Store(v)
		case http2.SettingMaxFrameSize:
			if v >= h2MinFrameSize && v <= h2MaxFrameSize {
				r.upFrameSize.Store(v)
			}
			// The client is held to the initial frame size, whatever the
			// upstream allows: h2spec (§4.2) expects a FRAME_SIZE_ERROR for a
			// larger frame from any server, and 16 KiB frames cost the relay
			// nothing it would notice.
			v = h2MinFrameSize
		case http2.SettingMaxConcurrentStreams:
			v, haveStreams = min(v, h2MaxStreams), true
		case http2.SettingMaxHeaderListSize:
			v, haveList = min(v, r.up.maxHeaderList), true
		}
		binary.BigEndian.PutUint32(payload[i+2:], v)
	}
	if !r.down.settingsSent {
		// The relay's own limits, announced with the upstream's first settings
		// as a terminating server would.
		if !haveStreams {
			payload = appendSetting(payload, http2.SettingMaxConcurrentStreams, h2MaxStreams)
		}
		if !haveList {
			payload = appendSetting(payload, http2.SettingMaxHeaderListSize, r.up.maxHeaderList)
		}
	}
	o.writeHeader(len(payload), http2.FrameSettings, fh.flags, 0)
	o.bw.Write(payload)
	if !r.down.settingsSent {
		r.down.settingsSent = true
		o.mu.Lock()
		o.gated = false // the client has its server preface: others may write
		o.mu.Unlock()
	}
	return nil
}

func (r *h2Relay) upstreamReset(fh h2FrameHeader) error {
	if err := checkReset(fh, "upstream "); err != nil {
		return err
	}
	if fh.stream%2 == 1 {
		r.mu.Lock()
		r.noteUpstreamLocked(h2UpstreamEvent{id: fh.stream, reset: true})
		r.mu.Unlock()
	}
	return r.relayReset(fh, r.ur, &r.cw, "upstream", func(code http2.ErrCode) error {
		return fmt.Errorf("upstream reset the stream (%v)", code)
	})
}

// upstreamGoAway relays the upstream's GOAWAY and ends the streams it did not
// process: the client retries those by itself.
func (r *h2Relay) upstreamGoAway(fh h2FrameHeader) error {
	br, o := r.ur, &r.cw
	if fh.length < 8 {
		return h2Error(http2.ErrCodeFrameSize, "upstream GOAWAY length")
	}
	if fh.stream != 0 {
		return h2Error(http2.ErrCodeProtocol, "upstream GOAWAY on a stream")
	}
	b, err := br.Peek(h2FrameHeaderLen + 4)
	if err != nil {
		return err
	}
	last := binary.BigEndian.Uint32(b[h2FrameHeaderLen:]) & h2MaxStreamID
	// A client must never see the last-stream-id of GOAWAYs go up (grpc-go
	// drops the whole connection when it does): if the relay already sent a
	// lower one (draining on shutdown), or the upstream did, the frame goes on
	// with that. It is rewritten in the reader's buffer, on its way through.
	r.mu.Lock()
	r.goAwayLast = min(r.goAwayLast, last)
	r.refuseAbove = min(r.refuseAbove, last)
	last = r.goAwayLast
	r.mu.Unlock()
	binary.BigEndian.PutUint32(b[h2FrameHeaderLen:], last)
	if err := copyN(br, o, h2FrameHeaderLen+int(fh.length)); err != nil {
		return err
	}
	now := time.Now()
	var gone []*h2Stream
	r.mu.Lock()
	drained := false
	for id, st := range r.streams {
		if id > last {
			gone = append(gone, st)
			drained = r.removeLocked(id, now) || drained
		}
	}
	r.mu.Unlock()
	if drained {
		r.uc.Close()
	}
	for _, st := range gone {
		st.l.fail("upstream", errH2UpstreamGoAway)
		r.finish(st, now)
	}
	return nil
}

// ---- stream table and the connection's end ----

// take removes a stream from the table, or returns nil when it is not there.
func (r *h2Relay) take(id uint32, now time.Time) *h2Stream {
	r.mu.Lock()
	st := r.streams[id]
	drained := st != nil && r.removeLocked(id, now)
	r.mu.Unlock()
	if drained {
		r.uc.Close() // toClient's end half-closes the client
	}
	return st
}

// removeLocked deletes a stream and reports whether that completed a drain.
func (r *h2Relay) removeLocked(id uint32, now time.Time) bool {
	delete(r.streams, id)
	if len(r.streams) > 0 {
		return false
	}
	r.idleSince = now
	return r.draining && !r.closing
}

// finish ends a stream taken from the table, whose response went to the client
// at end.
func (r *h2Relay) finish(st *h2Stream, end time.Time) {
	st.l.finish(end, r.fl)
	h2StreamPool.Put(st)
}

// closeLocked marks the connection closing and takes every open stream.
func (r *h2Relay) closeLocked() []*h2Stream {
	r.closing = true
	open := slices.Collect(maps.Values(r.streams))
	clear(r.streams)
	slices.SortFunc(open, func(a, b *h2Stream) int { return int(a.id) - int(b.id) })
	return open
}

// clientDone ends the connection after the client's side did: closed, broken,
// or in breach of the protocol (err is then an *h2ConnError, and the client gets
// a GOAWAY).
func (r *h2Relay) clientDone(err error) {
	now := time.Now()
	var ce *h2ConnError
	protocol := errors.As(err, &ce)
	// First the deadline: a client that stopped reading must not hold up the
	// GOAWAY below (nor toClient's flush it would wait behind) for ever.
	r.cc.SetWriteDeadline(now.Add(h2Linger))
	r.mu.Lock()
	r.clientGone = r.clientGone || !protocol
	open := r.closeLocked()
	last := min(r.maxSeen, r.goAwayLast)
	r.goAwayLast, r.sentGoAway = last, true
	if protocol {
		// The GOAWAY is the last frame the client gets (RFC 9113 §5.4.1):
		// toClient finishes the frame it may be in the middle of, relays no
		// other, and writes the GOAWAY before its end half-closes the client.
		// It is queued as the client is marked broken, not after: a toClient
		// that saw the mark first ended and half-closed the client before the
		// GOAWAY reached the writer, and the client read a bare EOF. Under
		// r.mu too, where it is claimed: an upstreamDone that finds it claimed
		// finds it queued.
		r.cw.post(appendGoAway(nil, last, ce.code, ce.msg), true)
	}
	r.mu.Unlock()
	if protocol {
		r.fl.breaches.Add(1)
		r.p.log.Debug("http/2 client broke the protocol", "peer", r.fl.peer, "err", err)
		if h2BreakHook != nil {
			h2BreakHook(r)
		}
		r.cw.flushQueued()
	}
	for _, st := range open {
		st.l.fail("client", err)
		r.finish(st, now)
	}
	if protocol {
		// toClient stops at the next frame boundary, or when the upstream
		// makes it wait that long.
		r.uc.SetReadDeadline(now.Add(h2BreakGrace))
		return
	}
	r.uc.Close() // toClient ends, flushing and half-closing the client
}

// upstreamDone ends the connection once the upstream's side ended: the streams
// still open are answered (gRPC ones with UNAVAILABLE trailers, others with 502 or
// a reset), the client gets a GOAWAY and a half-close, and has a moment to read
// them.
func (r *h2Relay) upstreamDone(err error) {
	now := time.Now()
	var we *h2WriteError
	toClientFailed := errors.As(err, &we)
	r.mu.Lock()
	kind := "upstream"
	if r.clientGone || toClientFailed {
		kind = "client"
	}
	open := r.closeLocked()
	last := min(r.maxSeen, r.goAwayLast)
	goAway := !r.sentGoAway
	r.goAwayLast, r.sentGoAway = last, true
	r.mu.Unlock()

	o := &r.cw
	write := kind == "upstream" && !o.midFrame
	if write {
		if !r.down.settingsSent {
			// The upstream never spoke HTTP/2: the client still gets a server
			// preface before anything else.
			o.writeHeader(0, http2.FrameSettings, 0, 0)
			r.down.settingsSent = true
		}
		r.endStreams(open, err)
		if goAway {
			code := http2.ErrCodeNo
			var ce *h2ConnError
			if errors.As(err, &ce) {
				code = http2.ErrCodeInternal // the upstream broke the protocol, not the client
				r.p.log.Debug("http/2 upstream broke the protocol", "dst", r.dst, "err", err)
			}
			o.writeHeader(8, http2.FrameGoAway, 0, 0)
			o.bw.Write(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(r.down.uscratch[:0], last), uint32(code)))
		}
		o.mu.Lock()
		o.gated = false
		o.mu.Unlock()
		o.release()
	}
	r.finishEnded()
	for _, st := range open {
		st.l.fail(kind, err)
		r.finish(st, now)
	}
	r.uc.Close()
	if kind == "client" {
		r.cc.SetReadDeadline(now)
		return
	}
	// A drain that claimed the GOAWAY before this end (so none was written
	// above) sends it now: the half-close waits for it, or the client would
	// read a bare EOF at shutdown.
	r.drainSend.Wait()
	closeWrite(r.cc)
	r.cc.SetReadDeadline(now.Add(h2Linger))
}

// endStreams answers the streams the upstream left open.
func (r *h2Relay) endStreams(open []*h2Stream, cause error) {
	o := &r.cw
	msg := "upstream broke off"
	if cause != nil {
		msg += ": " + cause.Error()
	}
	msg = url.PathEscape(msg[:min(len(msg), 256)])
	for _, st := range open {
		var block []byte
		switch {
		case st.grpc:
			if !st.responded {
				block = appendStaticField(block, ":status", "200")
				block = appendStaticField(block, "content-type", "application/grpc")
				st.l.status = http.StatusOK
			}
			block = appendStaticField(block, "grpc-status", strconv.Itoa(grpcUnavailable))
			block = appendStaticField(block, "grpc-message", msg)
			st.l.grpcStatus = grpcUnavailable
		case !st.responded:
			block = appendStaticField(block, ":status", strconv.Itoa(http.StatusBadGateway))
			st.l.status = http.StatusBadGateway
		default:
			// Part of a response went out: a reset, so that the client does not
			// take it for a whole one.
			o.bw.Write(appendRSTStream(r.down.uscratch[:0], st.id, http2.ErrCodeInternal))
			continue
		}
		o.writeHeader(len(block), http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, st.id)
		o.bw.Write(block)
	}
}

// drain stops taking streams (GOAWAY with the last stream forwarded) and closes
// the connection once the open ones are done.
func (r *h2Relay) drain() {
	r.mu.Lock()
	if r.closing || r.draining {
		r.mu.Unlock()
		return
	}
	r.draining = true
	last := min(r.maxSeen, r.goAwayLast)
	r.refuseAbove, r.goAwayLast = last, last
	goAway := !r.sentGoAway
	r.sentGoAway = true
	if goAway {
		// Claimed here, sent below: upstreamDone, which now writes none,
		// waits for it before it half-closes the client. (Not posted under
		// mu as clientDone's is: that could wait on a flush to a client
		// that does not read, holding mu, and no write deadline may cut
		// the responses still streaming.)
		r.drainSend.Add(1)
	}
	idle := len(r.streams) == 0
	r.mu.Unlock()
	if goAway {
		if h2DrainHook != nil {
			h2DrainHook(r)
		}
		r.cw.send(appendGoAway(nil, last, http2.ErrCodeNo, ""))
		r.drainSend.Done()
	}
	if idle {
		r.uc.Close()
	}
}

// ourPingAck reports whether fh is the ACK of a ping checkLive sent, which the
// client must not see.
func (r *h2Relay) ourPingAck(fh h2FrameHeader) bool {
	if !fh.flags.Has(http2.FlagPingAck) || fh.length != 8 || fh.stream != 0 {
		return false
	}
	if r.ur.Buffered() < h2FrameHeaderLen+8 {
		r.cw.bw.Flush() // about to wait for the payload: what is written goes out first
	}
	b, err := r.ur.Peek(h2FrameHeaderLen + 8)
	if err != nil {
		return false // copyN reports the short read
	}
	if binary.BigEndian.Uint64(b[h2FrameHeaderLen:]) != r.pingData {
		return false
	}
	r.pingSent.Store(0)
	return true
}

// checkLive pings an upstream that was silent for pingAfter while streams are
// open, and drops it when the ping is not answered within pingWithin: a peer that
// vanished without a FIN or a reset (its node went away) would otherwise hold the
// client's calls until TCP gives up, minutes later. Dropping it ends the open
// streams as any broken upstream does (gRPC: UNAVAILABLE). x/net's Transport,
// which the relay replaced, did the same.
func (r *h2Relay) checkLive() {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return
	}
	// The timer only fires again once this run re-arms it, so pings are never
	// sent twice at once; the ping itself goes out without r.mu held (a
	// stalled upstream may block the write).
	read := r.upRead.Load()
	if sent := r.pingSent.Load(); sent != 0 {
		waited := now.Sub(time.Unix(0, sent))
		switch {
		case read >= sent:
			r.pingSent.Store(0) // anything read since counts as an answer
		case waited >= r.pingWithin:
			r.upSilent.Store(true)
			r.p.log.Debug("http/2 upstream did not answer a ping", "dst", r.dst, "after", waited)
			r.uc.Close() // toClient's read fails and ends the streams
			return
		default:
			r.liveTimer.Reset(r.pingWithin - waited)
			return
		}
	}
	silent := now.Sub(time.Unix(0, read))
	if len(r.streams) > 0 && silent >= r.pingAfter {
		r.pingSent.Store(now.UnixNano())
		r.mu.Unlock()
		r.uw.send(appendPing(nil, r.pingData))
		r.mu.Lock()
		if !r.closing {
			r.liveTimer.Reset(r.pingWithin)
		}
		return
	}
	wait := r.pingAfter - silent
	if wait <= 0 {
		wait = r.pingAfter
	}
	r.liveTimer.Reset(wait)
}

// checkIdle drains a connection that had no stream for the idle timeout.
func (r *h2Relay) checkIdle() {
	timeout := r.p.cfg.IdleTimeout
	r.mu.Lock()
	if r.closing || r.draining {
		r.mu.Unlock()
		return
	}
	wait := timeout
	if len(r.streams) == 0 {
		idle := time.Since(r.idleSince)
		if idle >= timeout {
			r.mu.Unlock()
			r.drain()
			return
		}
		wait = timeout - idle
	}
	r.idle.Reset(wait)
	r.mu.Unlock()
}

// h2Relays is a proxy's set of relayed connections, for Shutdown's GOAWAY.
type h2Relays struct {
	mu sync.Mutex
	m  map[*h2Relay]struct{}
}

// track registers a relay (add) or forgets it; it reports false when the proxy
// began shutting down already.
func (rs *h2Relays) track(p *Proxy, r *h2Relay, add bool) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !add {
		delete(rs.m, r)
		return true
	}
	if p.closing.Load() {
		return false
	}
	if rs.m == nil {
		rs.m = make(map[*h2Relay]struct{})
	}
	rs.m[r] = struct{}{}
	return true
}

// drain sends every relayed connection a GOAWAY; Shutdown runs it.
func (rs *h2Relays) drain() {
	rs.mu.Lock()
	relays := slices.Collect(maps.Keys(rs.m))
	rs.mu.Unlock()
	// In parallel: a client that does not read must not hold up the others'
	// GOAWAYs until Shutdown's deadline.
	for _, r := range relays {
		go r.drain()
	}
}
