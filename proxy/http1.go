package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"
)

const (
	// maxResponseHead bounds a response head from an upstream. Apps are trusted
	// more than their clients, but not without limit.
	maxResponseHead = 1 << 20
	// pumpGrace is how long a finished response waits for its request body to
	// finish going upstream before the proxy gives up on the connection.
	pumpGrace = time.Second
	// lingerTimeout and lingerBytes bound the draining before a close that
	// follows an error response (what net/http calls reset avoidance).
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 256 << 10
)

// aLongTimeAgo is a deadline that has passed: setting it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// upstreamError is a failure to get a response from the upstream, and what the
// client is told about it.
type upstreamError struct {
	kind   string // error.type in the span
	status int    // 502, 503
	err    error
}

func (e *upstreamError) Error() string { return e.kind + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// h1Conn serves one client connection speaking HTTP/1.x. Requests are handled one
// at a time; pipelined ones wait in the reader.
type h1Conn struct {
	p        *Proxy
	conn     net.Conn // the client connection, counted
	br       *bufio.Reader
	bw       *bufio.Writer
	fl       *flow
	dst      netip.AddrPort
	dstStr   string
	accepted time.Time
	waiter   *peeker // waits for the next request without a buffer
	headAt   int64   // stream offset of the request head, for Config.Infer
	// readDeadline is the read deadline set on conn (zero: none); every change
	// goes through setReadDeadline, so that awaitNext can leave a recent
	// enough idle deadline alone.
	readDeadline time.Time

	// Per request, reused.
	req, res head
	x        h1Exchange
	legs     legs
	reqLen   lengthReader
	reqChunk chunkedReader
	resLen   lengthReader
	resChunk chunkedReader
	pump     bodyPump
}

// h1Exchange is the state of the request in flight on an h1Conn.
type h1Exchange struct {
	body     framing
	upgrade  bool // an Upgrade (WebSocket) request, forwarded as one
	connect  bool
	expect   bool // the client waits for 100 Continue before its body
	keep     bool // the client connection may carry another request
	inline   bool // the whole body is buffered and goes out with the head
	pumping  bool // a bodyPump is or was running
	got100   bool
	answered bool // the response head went to the client
	unread   bool // the client may still be sending a body nobody will read
	up       *upstream
}

func newH1Conn(p *Proxy, c net.Conn, br *bufio.Reader, fl *flow, dst netip.AddrPort, accepted time.Time) *h1Conn {
	hc := &h1Conn{
		p:        p,
		conn:     c,
		br:       br,
		fl:       fl,
		dst:      dst,
		dstStr:   dst.String(),
		accepted: accepted,
	}
	hc.req.capture, hc.res.capture = p.tr.capture, p.tr.capture
	return hc
}

// reader and writer return the client connection's buffers, from the pools
// when the connection has none: they are held only while used, not while the
// connection idles or the app works on a request (releaseReader,
// releaseWriter).
func (hc *h1Conn) reader() *bufio.Reader {
	if hc.br == nil {
		hc.br = getReader(hc.conn)
	}
	return hc.br
}

func (hc *h1Conn) writer() *bufio.Writer {
	if hc.bw == nil {
		hc.bw = getWriter(hc.conn)
	}
	return hc.bw
}

// releaseReader gives the reader back when it holds nothing (no pipelined
// request, no body).
func (hc *h1Conn) releaseReader() {
	if hc.br != nil && hc.br.Buffered() == 0 {
		putReader(hc.br)
		hc.br = nil
	}
}

// releaseWriter gives the writer back once what it held was flushed.
func (hc *h1Conn) releaseWriter() {
	if hc.bw != nil && hc.bw.Buffered() == 0 {
		putWriter(hc.bw)
		hc.bw = nil
	}
}

// release returns the connection's buffers to the pools.
func (hc *h1Conn) release() {
	putReader(hc.br)
	putWriter(hc.bw)
	hc.br, hc.bw = nil, nil
}

func (hc *h1Conn) serve() {
	deadline := hc.accepted.Add(hc.p.cfg.HeaderTimeout)
	defer hc.fl.upstream.Store(nil)
	for first := true; ; first = false {
		hc.req.method = "" // until parsed: errors about this request must not use the last one's
		if !first {
			if !hc.awaitNext() {
				return
			}
		}
		// The header timeout guards a head that trickles in. One that is
		// already here whole (nearly every kept-alive request) needs no timer:
		// then the idle deadline stays armed, harmless until something reads
		// the client again, and is cleared only for what will (a body, a
		// tunnel). Two timer updates fewer per request.
		armed := first || !headBuffered(hc.br)
		if armed {
			if !first {
				deadline = time.Now().Add(hc.p.cfg.HeaderTimeout)
			}
			hc.setReadDeadline(deadline)
		}
		raw, partial, err := readHeadString(hc.br, hc.p.cfg.MaxHeaderBytes)
		if err != nil {
			hc.headFailed(err, partial || first)
			return
		}
		start := time.Now()
		hc.headAt = hc.fl.in.Load() - int64(hc.br.Buffered()+len(raw))
		if armed {
			hc.setReadDeadline(time.Time{})
		}
		if err := hc.req.parseRequest(raw); err != nil {
			hc.reject(err)
			return
		}
		if !hc.exchange(start) {
			if hc.x.unread {
				hc.lingerClose()
			}
			return
		}
	}
}

// awaitNext waits for the next request on a kept-alive connection, up to the idle
// timeout. Shutdown closes connections while they wait here.
func (hc *h1Conn) awaitNext() bool {
	if hc.br != nil && hc.br.Buffered() > 0 { // pipelined
		return !hc.p.closing.Load()
	}
	hc.fl.idle.Store(true)
	defer hc.fl.idle.Store(false)
	if hc.p.closing.Load() {
		return false
	}
	hc.forget()
	hc.awaitIdle(time.Now())
	// A kept-alive connection spends most of its life here, and a node keeps
	// thousands of them: while it waits it holds no buffer (8 KiB less each).
	// The wait is a peek at the socket; the read that follows cannot block.
	hc.release()
	if hc.waiter == nil {
		hc.waiter = newPeeker(hc.conn)
	}
	err := hc.waiter.wait()
	hc.br = getReader(hc.conn)
	if err != nil {
		return false
	}
	_, err = hc.br.Peek(1)
	return err == nil
}

// setReadDeadline sets conn's read deadline and remembers it.
func (hc *h1Conn) setReadDeadline(t time.Time) {
	hc.readDeadline = t
	hc.conn.SetReadDeadline(t)
}

// awaitIdle arms the idle timeout for the wait for the next request. Moving
// a deadline is a timer update (a new timer on a local hand-off), and a
// kept-alive connection would move it on every request: the deadline moves
// only once it has fallen behind by idleSlack of the timeout, so a connection
// is closed after between 15/16 and all of IdleTimeout without a request.
func (hc *h1Conn) awaitIdle(now time.Time) {
	idle := hc.p.cfg.IdleTimeout
	want := now.Add(idle)
	if hc.readDeadline.IsZero() || want.Sub(hc.readDeadline) > idle/idleSlack {
		hc.setReadDeadline(want)
	}
}

// idleSlack: the idle deadline may lag by IdleTimeout/idleSlack (awaitIdle).
const idleSlack = 16

// forget lets go of everything the last exchange left behind before the
// connection waits, for minutes or hours, for its next request: the parsed heads
// (their strings point into the whole raw head), the legs (whose strings do too)
// and the upstream. An idle connection then costs the same whatever the size of
// its last head. What the legs recorded went out with their spans, as copies.
func (hc *h1Conn) forget() {
	hc.req.forget()
	hc.res.forget()
	hc.legs.forget()
	hc.x = h1Exchange{}
	hc.reqLen, hc.resLen = lengthReader{}, lengthReader{}
	hc.reqChunk, hc.resChunk = chunkedReader{}, chunkedReader{}
	hc.pump = bodyPump{}
	hc.fl.upstream.Store(nil)
}

// headFailed answers a request head that could not be read, if an answer helps.
func (hc *h1Conn) headFailed(err error, partial bool) {
	var pe *protocolError
	switch {
	case errors.As(err, &pe):
		hc.reject(pe)
	case errors.Is(err, os.ErrDeadlineExceeded) && partial:
		// A head that trickles in (slowloris) is cut off at the header timeout.
		hc.writeError(http.StatusRequestTimeout, "request header timeout", false)
		hc.lingerClose()
	}
}

// reject answers a malformed request and gives up on the connection: after bad
// framing nothing that follows can be trusted.
func (hc *h1Conn) reject(err error) {
	hc.fl.breaches.Add(1)
	status := http.StatusBadRequest
	var pe *protocolError
	if errors.As(err, &pe) {
		status = pe.status
	}
	hc.writeError(status, err.Error(), false)
	hc.lingerClose()
}

// lingerClose half-closes after a final error response and drains what the
// client is still sending for a moment. Closing a socket with unread input sends
// a reset, and a reset can destroy the response before the client reads it.
func (hc *h1Conn) lingerClose() {
	if closeWrite(hc.conn) != nil {
		return
	}
	hc.setReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, hc.reader(), lingerBytes)
}

// writeError sends a response the proxy makes up itself.
func (hc *h1Conn) writeError(status int, msg string, keep bool) {
	w := hc.writer()
	body := http.StatusText(status) + ": " + msg + "\n"
	writeStatusLine(w, status, http.StatusText(status))
	w.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	w.WriteString("Content-Length: ")
	w.WriteString(itoa64(int64(len(body))))
	w.WriteString("\r\n")
	if !keep {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	if hc.req.method != http.MethodHead {
		w.WriteString(body)
	}
	w.Flush()
	hc.releaseWriter()
}

// exchange proxies one request whose head was read at start. It reports whether
// the connection can carry another.
func (hc *h1Conn) exchange(start time.Time) bool {
	req, x := &hc.req, &hc.x
	body, err := req.requestFraming()
	if err != nil {
		hc.reject(err)
		return false
	}
	co := req.connection()
	*x = h1Exchange{
		body:    body,
		keep:    req.minor == 1 && !co.close || req.minor == 0 && co.keepAlive,
		connect: req.method == http.MethodConnect,
		expect:  req.minor == 1 && body.hasBody() && hasToken(req.values(nil, "Expect"), "100-continue"),
	}
	if x.connect && body.hasBody() {
		hc.reject(errConnectBody)
		return false
	}
	// An upgrade with a body would have the body and the new protocol race on
	// one stream; h2c upgrades are declined (the client carries on in HTTP/1.1).
	x.upgrade = co.upgrade && !body.hasBody() && wantsUpgrade(req.values(nil, "Upgrade"))
	if !hc.readDeadline.IsZero() && (body.hasBody() || x.upgrade || x.connect) {
		hc.setReadDeadline(time.Time{}) // what follows reads the client
	}

	inferred := hc.p.inferParent(hc.conn, hc.headAt, req.legs.h)
	hc.p.tr.begin(&hc.legs, hc.requestInfo(), req.legs.h, start)
	hc.legs.inferred = inferred

	err = hc.roundTrip()
	if x.inline {
		// Kept until now so a retry could resend it.
		hc.br.Discard(int(x.body.n))
	}
	if err != nil {
		return hc.failed(err)
	}
	if x.upgrade && hc.res.status == http.StatusSwitchingProtocols ||
		x.connect && hc.res.status/100 == 2 {
		hc.tunnel()
		return false
	}
	return hc.respond()
}

// wantsUpgrade reports whether an Upgrade header asks for something the proxy
// relays: anything but h2c alone.
func wantsUpgrade(vals []string) bool {
	for _, v := range vals {
		for p := range strings.SplitSeq(v, ",") {
			if p = trimOWS(p); p != "" && !strings.EqualFold(p, "h2c") {
				return true
			}
		}
	}
	return false
}

// roundTrip sends the request upstream and reads the response head. A pooled
// connection that turns out dead before answering is replaced once, when the
// request is idempotent and still wholly in hand (RFC 9110 §9.2.2).
func (hc *h1Conn) roundTrip() error {
	x, l := &hc.x, &hc.legs
	x.inline = x.body.kind == bodyLength && x.body.n > 0 && x.body.n <= int64(hc.br.Buffered()) && !x.expect
	replayable := (!x.body.hasBody() || x.inline) && idempotent(&hc.req)
	l.dialStart = time.Now()
	for attempt := 0; ; attempt++ {
		var u *upstream
		if attempt == 0 {
			u = hc.p.pool.get(hc.dst)
		}
		if u == nil {
			c, err := hc.p.dial(context.Background(), hc.dstStr)
			if err != nil {
				return &upstreamError{kind: "connect", status: http.StatusServiceUnavailable, err: err}
			}
			u = newUpstream(c, hc.dst)
		}
		x.up = u
		hc.fl.upstream.Store(&u.conn)
		err := hc.writeRequest(u)
		if err == nil {
			err = hc.readResponseHead(u)
		}
		if err == nil {
			return nil
		}
		u.conn.Close()
		if attempt > 0 || !u.reused || !replayable || x.pumping || !l.firstByte.IsZero() {
			return err
		}
	}
}

func idempotent(h *head) bool {
	switch h.method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return h.count("Idempotency-Key") > 0
}

// writeRequest writes the head (and a buffered body) upstream, and starts a pump
// for any body still to come.
func (hc *h1Conn) writeRequest(u *upstream) error {
	x, l := &hc.x, &hc.legs
	hc.p.inferSending(u, hc.req.legs.h)
	bw := u.writer()
	before := u.sent
	writeRequestHead(bw, &hc.req, x.body, x.upgrade, hc.dstStr)
	if x.inline {
		b, _ := hc.br.Peek(int(x.body.n))
		bw.Write(b)
	}
	// The client leg starts as the head goes on the wire, not after write(2)
	// returns: by then, on a busy node, the next proxy may already have read it,
	// and its span would start before its parent's.
	l.cliStart = time.Now()
	whole := !x.body.hasBody() || x.inline
	if whole && u.deferSend(before) {
		// Out as the wait for the response begins (readResponseHead).
		if !x.body.hasBody() {
			hc.releaseReader()
		}
		return nil
	}
	if err := bw.Flush(); err != nil {
		return &upstreamError{kind: "write", status: http.StatusBadGateway, err: err}
	}
	if whole {
		l.sent = time.Now()
		// While the app works on it the request holds no buffer on either
		// side (an inline body stays in the reader until it cannot be resent).
		u.releaseWriter()
		if !x.body.hasBody() {
			hc.releaseReader()
		}
		return nil
	}
	bp := &hc.pump
	*bp = bodyPump{up: u, copy: bodyCopy{dst: bw}}
	if x.body.kind == bodyChunked {
		hc.reqChunk.reset(hc.br, hc.p.cfg.MaxHeaderBytes)
		bp.copy.src, bp.chunks, bp.copy.chunked = &hc.reqChunk, &hc.reqChunk, true
	} else {
		hc.reqLen = lengthReader{br: hc.br, n: x.body.n}
		bp.copy.src = &hc.reqLen
	}
	x.pumping = true
	bp.start()
	return nil
}

// readResponseHead reads the upstream's final response head (or 101), passing
// interim 1xx responses on to the client.
func (hc *h1Conn) readResponseHead(u *upstream) error {
	x, l, res := &hc.x, &hc.legs, &hc.res
	for {
		if err := u.awaitResponse(); err != nil {
			var se *sendError
			if errors.As(err, &se) {
				return &upstreamError{kind: "write", status: http.StatusBadGateway, err: se.err}
			}
			return &upstreamError{kind: "upstream", status: http.StatusBadGateway, err: err}
		}
		if !u.sentAt.IsZero() {
			l.sent, u.sentAt = u.sentAt, time.Time{}
		}
		if l.firstByte.IsZero() {
			l.firstByte = time.Now()
		}
		raw, _, err := readHeadString(u.br, maxResponseHead)
		if err == nil {
			err = res.parseResponse(raw)
		}
		if err != nil {
			return &upstreamError{kind: "response", status: http.StatusBadGateway, err: err}
		}
		switch {
		case res.status >= 200:
			return nil
		case res.status == http.StatusSwitchingProtocols:
			if x.upgrade {
				return nil
			}
			return &upstreamError{kind: "response", status: http.StatusBadGateway, err: errors.New("101 without an upgrade request")}
		case res.status == http.StatusContinue:
			x.got100 = true
		}
		if hc.req.minor == 1 {
			w := hc.writer()
			writeStatusLine(w, res.status, res.reason)
			writeFields(w, res, false, false)
			w.WriteString("\r\n")
			if err := w.Flush(); err != nil {
				return &upstreamError{kind: "client", err: err}
			}
		}
	}
}

// respond streams the response to the client and settles both connections.
func (hc *h1Conn) respond() bool {
	x, l, res, u := &hc.x, &hc.legs, &hc.res, hc.x.up
	in, err := res.responseFraming(hc.req.method)
	if err != nil {
		u.conn.Close()
		return hc.failed(&upstreamError{kind: "response", status: http.StatusBadGateway, err: err})
	}
	rc := res.connection()
	upKeep := res.minor == 1 && !rc.close && in.kind != bodyUntilClose
	out := in
	if in.kind == bodyChunked || in.kind == bodyUntilClose {
		// HTTP/1.1 clients get chunks (and keep their connection even when the
		// upstream delimits by closing); HTTP/1.0 ones get bytes until close.
		out.kind = bodyChunked
		if hc.req.minor == 0 {
			out.kind = bodyUntilClose
		}
	}
	if out.kind == bodyUntilClose || hc.p.closing.Load() {
		x.keep = false
	}
	l.response(res.status, res.legs.h)
	w := hc.writer()
	writeResponseHead(w, res, out, x.keep, hc.req.minor, hc.req.method)
	x.answered = true
	l.respHeader = time.Now()

	var readErr, writeErr error
	if in.hasBody() {
		bc := bodyCopy{dst: w, chunked: out.kind == bodyChunked}
		switch in.kind {
		case bodyLength:
			hc.resLen = lengthReader{br: u.br, n: in.n}
			bc.src = &hc.resLen
		case bodyChunked:
			hc.resChunk.reset(u.br, maxResponseHead)
			bc.src = &hc.resChunk
		default:
			bc.src = untilCloseReader{u.br}
		}
		readErr, writeErr = bc.copy()
		if readErr == nil && writeErr == nil && out.kind == bodyChunked {
			var trailer []byte
			if in.kind == bodyChunked {
				trailer = hc.resChunk.trailer
			}
			writeErr = writeLastChunk(w, trailer)
		}
	}
	if readErr == nil {
		l.cliEnd = time.Now()
	}
	// The server leg ends as the last bytes go to the client, not after write(2)
	// returns: the client (our other proxy, on a busy node) may have read them
	// already, and the parent span must not end before this one.
	end := time.Now()
	if writeErr == nil {
		writeErr = w.Flush()
	}
	hc.releaseWriter()
	if readErr != nil {
		l.fail("upstream", readErr)
	}
	if readErr != nil || writeErr != nil {
		x.keep, upKeep = false, false
	}
	if !hc.settlePump() {
		x.keep, upKeep = false, false
	}
	if upKeep && !u.clean(in.kind != bodyNone) {
		// Bytes the response did not account for (a body on a 204 or HEAD
		// answer, more than Content-Length) would become the next client's
		// response: the connection goes, not back to the pool.
		upKeep = false
		l.upstreamDiscarded = true
	}
	if upKeep {
		hc.p.pool.put(u)
	} else {
		u.conn.Close()
	}
	l.finish(end, hc.fl)
	return x.keep
}

// settlePump waits for the request body to finish going upstream once the
// response is complete, and reports whether it did. A body the upstream stopped
// wanting (it answered early; it refused a 100-continue) is abandoned, which
// costs the client connection since the rest of it is still on the wire.
func (hc *h1Conn) settlePump() bool {
	x, bp := &hc.x, &hc.pump
	if !x.pumping {
		return true
	}
	x.pumping = false
	select {
	case <-bp.done:
	default:
		abandon := x.expect && !x.got100 // the client waits for a 100 that will not come
		if !abandon {
			t := time.NewTimer(pumpGrace)
			select {
			case <-bp.done:
				t.Stop()
			case <-t.C:
				abandon = true
			}
		}
		if abandon {
			hc.stopPump()
			x.unread = true
			return false
		}
	}
	if bp.ok() {
		hc.legs.sent = bp.sentAt
		return true
	}
	return false
}

// stopPump wakes a pump blocked on either side and waits for it to return.
func (hc *h1Conn) stopPump() {
	hc.setReadDeadline(aLongTimeAgo)
	hc.pump.up.conn.Close()
	<-hc.pump.done
}

// failed handles a request that got no usable response: it tells the client, if
// it can, and ends the legs. It reports whether the connection can go on.
func (hc *h1Conn) failed(err error) bool {
	x, l := &hc.x, &hc.legs
	status := http.StatusBadGateway
	kind := "upstream"
	var ue *upstreamError
	if errors.As(err, &ue) {
		status, kind = ue.status, ue.kind
	}
	if x.pumping {
		x.pumping = false
		select {
		case <-hc.pump.done:
			// The pump failed first and took the upstream down with it: the
			// request body is to blame, not the upstream.
			if rerr := hc.pump.readErr; rerr != nil {
				kind, err = "request", rerr
				status = 0 // the client went away
				var pe *protocolError
				if errors.As(rerr, &pe) {
					status = pe.status // a malformed body
				}
			}
		default:
			hc.stopPump()
		}
		x.keep, x.unread = false, true // the body is half read
	} else if x.body.hasBody() && !x.inline {
		x.keep, x.unread = false, true // the body was never read
	}
	if x.up != nil {
		x.up.conn.Close()
	}
	l.fail(kind, err)
	if status != 0 && !x.answered {
		hc.setReadDeadline(time.Time{})
		hc.writeError(status, err.Error(), x.keep)
		l.status = status
	} else {
		x.keep = false
	}
	hc.p.log.Debug("request failed", "dst", hc.dstStr, "err", err)
	l.finish(time.Now(), hc.fl)
	return x.keep
}

// tunnel finishes an upgraded (101) or CONNECT (2xx) request: the response head
// goes to the client and from then on bytes are relayed both ways as they are.
func (hc *h1Conn) tunnel() {
	x, l, u := &hc.x, &hc.legs, hc.x.up
	w := hc.writer()
	writeTunnelHead(w, &hc.res, x.connect)
	err := w.Flush()
	now := time.Now()
	l.respHeader, l.cliEnd = now, now
	l.response(hc.res.status, hc.res.legs.h)
	if err != nil {
		x.keep = false
	}
	// The exchange that set up the tunnel is what the legs time; the tunnel's
	// life (a WebSocket session) is in the flow.
	l.finish(now, hc.fl)
	if err == nil {
		hc.fl.setProtocol(ProtocolWebSocket)
		if splice(hc.conn, take(hc.br), u.conn, take(u.br), nil, nil, hc.p.cfg.SpliceIdleTimeout) {
			hc.fl.silent.Store(true)
		}
	}
	u.conn.Close()
}

func (hc *h1Conn) requestInfo() RequestInfo {
	req := &hc.req
	info := hc.fl.request(ProtocolHTTP1, "1.1")
	if req.minor == 0 {
		info.Version = "1.0"
	}
	info.Method = req.method
	info.Path, info.Query = splitTarget(req.target)
	info.Host = req.value("Host")
	info.UserAgent = req.value("User-Agent")
	return info
}

// splitTarget returns the path and query of a request-target in any of its four
// forms (RFC 9112 §3.2).
func splitTarget(t string) (path, query string) {
	switch {
	case t == "*":
		return "*", ""
	case strings.HasPrefix(t, "/"):
	default:
		_, rest, ok := strings.Cut(t, "://")
		if !ok {
			return "", "" // authority-form (CONNECT host:port)
		}
		i := strings.IndexAny(rest, "/?")
		if i < 0 {
			return "/", ""
		}
		t = rest[i:]
	}
	path, query, _ = strings.Cut(t, "?")
	if path == "" {
		path = "/"
	}
	return path, query
}
