package proxy

// Request header blocks on a relayed HTTP/2 connection: decoded from the client,
// given their trace context through the legs machinery, and encoded again toward
// the upstream; and the few answers the relay gives itself.

import (
	"encoding/binary"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hoptrace/hoptrace/spans"
)

// clientHeaders reads a header block from the client: a new request, whose trace
// context is decided and injected, or trailers.
func (r *h2Relay) clientHeaders(fh h2FrameHeader) error {
	br, o := r.cr, &r.uw
	br.Discard(h2FrameHeaderLen)
	id := fh.stream
	if id == 0 {
		return h2Error(http2.ErrCodeProtocol, "HEADERS on stream 0")
	}
	if v := r.reqTableMax.Load(); v != r.reqTable {
		r.reqDec.SetAllowedMaxDynamicTableSize(v)
		r.reqTable = v
	}
	r.reqFields, r.reqSize, r.reqTruncated, r.reqInvalid = r.reqFields[:0], 0, false, false
	r.reqDec.SetEmitEnabled(true)

	if int(fh.length) > r.maxBlockFrame() {
		return h2Error(http2.ErrCodeProtocol, "header block too large")
	}
	r.cscratch = grow(r.cscratch, int(fh.length))
	payload := r.cscratch[:fh.length]
	if err := readFull(br, o, payload); err != nil {
		return err
	}
	frag, prio, err := headerFragment(fh, payload)
	if err != nil {
		return err
	}
	r.prioLen = copy(r.prio[:], prio)
	if err := r.decodeRequestFragment(frag); err != nil {
		return err
	}
	frames := 1
	for flags := fh.flags; !flags.Has(http2.FlagHeadersEndHeaders); {
		next, err := peekH2FrameHeader(br, o)
		if err != nil {
			return err
		}
		if next.typ != http2.FrameContinuation || next.stream != id {
			return h2Error(http2.ErrCodeProtocol, "header block interrupted")
		}
		if next.length > h2MinFrameSize {
			return h2Error(http2.ErrCodeFrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE")
		}
		if int(next.length) > r.maxBlockFrame() {
			return h2Error(http2.ErrCodeProtocol, "header block too large")
		}
		if frames++; frames > h2MaxBlockFrames {
			return h2Error(http2.ErrCodeEnhanceYourCalm, "header block in too many frames")
		}
		br.Discard(h2FrameHeaderLen)
		r.cscratch = grow(r.cscratch, int(next.length))
		frag := r.cscratch[:next.length]
		if err := readFull(br, o, frag); err != nil {
			return err
		}
		if err := r.decodeRequestFragment(frag); err != nil {
			return err
		}
		flags = next.flags
	}
	if err := r.reqDec.Close(); err != nil {
		return h2Error(http2.ErrCodeCompression, err.Error())
	}
	end := fh.flags.Has(http2.FlagHeadersEndStream)
	// A stream cannot depend on itself (RFC 9113 §5.3.1).
	selfDep := len(prio) == 5 && binary.BigEndian.Uint32(prio)&h2MaxStreamID == id
	if id > r.lastClientID {
		if id%2 == 0 {
			return h2Error(http2.ErrCodeProtocol, "client opened an even stream")
		}
		r.lastClientID = id
		if selfDep {
			return r.resetLocally(id, end, http2.ErrCodeProtocol)
		}
		return r.clientRequest(id, end)
	}
	// A stream opened before: trailers, if the client's half of it is open
	// (RFC 9113 §5.1, §8.1).
	if _, open := r.open[id]; open {
		if selfDep {
			return r.clientStreamError(id, http2.ErrCodeProtocol, "stream depends on itself")
		}
		return r.clientTrailers(id, end)
	}
	if _, local := r.local[id]; local || id > r.maxSeen && r.refused(id) {
		if end {
			delete(r.local, id)
		}
		return nil // decoded for the dynamic table, and that is all
	}
	if r.recentlyClosed(id) {
		return h2Error(http2.ErrCodeStreamClosed, "HEADERS after the end of the stream")
	}
	// Opening a stream closes every idle one below it (RFC 9113 §5.1.1).
	return h2Error(http2.ErrCodeProtocol, "HEADERS on a stream id below one opened before")
}

// refused reports whether a stream was not forwarded because the client was told
// by a GOAWAY that it would not be.
func (r *h2Relay) refused(id uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return id > r.refuseAbove
}

// maxBlockFrame bounds a request header frame before it is read: twice the header
// list limit, as decodeRequestFragment checks, plus padding and priority.
func (r *h2Relay) maxBlockFrame() int { return 2*int(r.maxHeaderList) + h2FrameHeaderLen + 256 + 5 }

func (r *h2Relay) decodeRequestFragment(frag []byte) error {
	// As x/net's server: a fragment far beyond what the list may still hold is
	// not worth decoding (a CONTINUATION flood), and ends the connection.
	remain := uint32(0)
	if !r.reqTruncated {
		remain = r.maxHeaderList - r.reqSize
	}
	if len(frag) > 2*int(remain)+h2FrameHeaderLen && len(frag) > 0 {
		return h2Error(http2.ErrCodeProtocol, "header block too large")
	}
	if _, err := r.reqDec.Write(frag); err != nil {
		return h2Error(http2.ErrCodeCompression, err.Error())
	}
	return nil
}

// requestField collects a decoded request field, within the header list limit.
func (r *h2Relay) requestField(f hpack.HeaderField) {
	size := f.Size()
	if r.reqSize+size > r.maxHeaderList {
		r.reqTruncated = true
		r.reqDec.SetEmitEnabled(false) // still decoded, for the dynamic table
		return
	}
	r.reqSize += size
	if !validH2Field(f) {
		r.reqInvalid = true
	}
	r.reqFields = append(r.reqFields, f)
}

// validH2Field checks a field as x/net's server does: a lower-case token name
// (or a pseudo-header) and a value without control characters.
func validH2Field(f hpack.HeaderField) bool {
	name := f.Name
	if strings.HasPrefix(name, ":") {
		name = name[1:]
	}
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !httpguts.IsTokenRune(rune(c)) || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return httpguts.ValidHeaderFieldValue(f.Value)
}

// h2TraceHeaders are the header fields the legs machinery reads and rewrites:
// spans' trace headers and the sampling override. They are emitted after the
// request's other fields, from the http.Header the machinery left.
var h2TraceHeaders = [...]struct{ name, key string }{
	{"traceparent", "Traceparent"},
	{"tracestate", "Tracestate"},
	{"b3", "B3"},
	{"x-b3-traceid", "X-B3-Traceid"},
	{"x-b3-spanid", "X-B3-Spanid"},
	{"x-b3-parentspanid", "X-B3-Parentspanid"},
	{"x-b3-sampled", "X-B3-Sampled"},
	{"x-b3-flags", "X-B3-Flags"},
	{"hoptrace-sample", spans.OverrideHeader},
}

func h2TraceHeader(name string) (key string, ok bool) {
	switch name {
	case "traceparent":
		return "Traceparent", true
	case "tracestate":
		return "Tracestate", true
	case "b3":
		return "B3", true
	case "x-b3-traceid":
		return "X-B3-Traceid", true
	case "x-b3-spanid":
		return "X-B3-Spanid", true
	case "x-b3-parentspanid":
		return "X-B3-Parentspanid", true
	case "x-b3-sampled":
		return "X-B3-Sampled", true
	case "x-b3-flags":
		return "X-B3-Flags", true
	case "hoptrace-sample":
		return spans.OverrideHeader, true
	}
	return "", false
}

// connectionSpecific reports fields HTTP/2 forbids (RFC 9113 §8.2.2): they make a
// message malformed.
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// The request pseudo-headers (RFC 9113 §8.3.1, RFC 8441 §4), as bits.
const (
	pseudoMethod uint8 = 1 << iota
	pseudoPath
	pseudoAuthority
	pseudoScheme
	pseudoProtocol
)

// requestInfo reads the request's pseudo-headers and the fields spans describe,
// and reports whether the request is well-formed (RFC 9113 §8.1.1, §8.2, §8.3):
// a malformed one is reset, never forwarded.
func (r *h2Relay) requestInfo() (info requestInfo, grpc, ok bool) {
	info = requestInfo{proto: ProtocolHTTP2, version: "2", peer: r.fl.peer, dst: r.dst}
	info.untrusted = r.fl.untrusted
	var seen uint8
	var contentType, host, path, protocol string
	regular := false
	r.reqLength = -1
	for _, f := range r.reqFields {
		if !strings.HasPrefix(f.Name, ":") {
			regular = true
			switch f.Name {
			case "content-type":
				contentType = f.Value
			case "user-agent":
				info.userAgent = f.Value
			case "host":
				host = f.Value
			case "content-length":
				n, ok := parseDecimal(f.Value)
				if !ok || r.reqLength >= 0 && n != r.reqLength {
					return info, false, false
				}
				r.reqLength = n
			case "te":
				// The only TE an HTTP/2 request may carry (RFC 9113 §8.2.2).
				if !strings.EqualFold(f.Value, "trailers") {
					return info, false, false
				}
			case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
				return info, false, false // connection-specific (RFC 9113 §8.2.2)
			}
			continue
		}
		if regular {
			return info, false, false // pseudo-headers come first (RFC 9113 §8.3)
		}
		var bit uint8
		switch f.Name {
		case ":method":
			bit, info.method = pseudoMethod, f.Value
		case ":path":
			bit, path = pseudoPath, f.Value
		case ":authority":
			bit, info.host = pseudoAuthority, f.Value
		case ":scheme":
			bit = pseudoScheme
		case ":protocol":
			bit, protocol = pseudoProtocol, f.Value
		default:
			return info, false, false
		}
		if seen&bit != 0 {
			return info, false, false
		}
		seen |= bit
	}
	// RFC 9113 §8.3.1: a CONNECT request names an authority and nothing else;
	// any other (RFC 8441's extended CONNECT, with :protocol, among them) has a
	// method, a scheme and a path that is not empty.
	switch {
	case info.method == "":
		return info, false, false
	case info.method == http.MethodConnect && seen&pseudoProtocol == 0:
		if seen&(pseudoScheme|pseudoPath) != 0 || info.host == "" {
			return info, false, false
		}
	case seen&pseudoProtocol != 0 && (info.method != http.MethodConnect || protocol == ""),
		seen&pseudoScheme == 0, path == "":
		return info, false, false
	}
	if info.host == "" {
		info.host = host
	}
	info.path, info.query, _ = strings.Cut(path, "?")
	if isGRPC(contentType) {
		info.proto, grpc = ProtocolGRPC, true
	}
	return info, grpc, true
}

// traceHeader fills r.hdr with what the legs machinery reads: the trace headers
// and captured headers, or every field when SkipTrace may look at any.
func (r *h2Relay) traceHeader() http.Header {
	clear(r.hdr)
	r.vals = r.vals[:0]
	p := r.p
	all := p.cfg.SkipTrace != nil && p.cfg.Sampler != nil
	for _, f := range r.reqFields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		if key, ok := h2TraceHeader(f.Name); ok {
			r.addHeader(key, f.Value)
			continue
		}
		if all {
			r.addHeader(r.canonical(f.Name), f.Value)
			continue
		}
		for i, name := range p.h2capture {
			if name == f.Name {
				r.addHeader(p.capture[i].key, f.Value)
			}
		}
	}
	return r.hdr
}

func (r *h2Relay) addHeader(key, v string) {
	if old, ok := r.hdr[key]; ok {
		r.hdr[key] = append(old, v)
		return
	}
	if n := len(r.vals); n < cap(r.vals) {
		r.vals = append(r.vals, v)
		r.hdr[key] = r.vals[n : n+1 : n+1]
		return
	}
	r.hdr[key] = []string{v}
}

// canonical returns a field name's http.Header key, remembering the connection's
// usual names.
func (r *h2Relay) canonical(name string) string {
	if k, ok := r.canon[name]; ok {
		return k
	}
	k := http.CanonicalHeaderKey(name)
	if r.canon == nil {
		r.canon = make(map[string]string)
	}
	if len(r.canon) < 64 {
		r.canon[name] = k
	}
	return k
}

// skipTrace asks cfg.SkipTrace about a request, shown as net/http would.
func (r *h2Relay) skipTrace(info *requestInfo, h http.Header) bool {
	if r.peerStr == "" {
		r.peerStr = r.fl.peer.String()
	}
	r.reqURL = url.URL{Path: info.path, RawQuery: info.query}
	r.req = http.Request{
		Method: info.method, URL: &r.reqURL, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: h, Host: info.host, RemoteAddr: r.peerStr, RequestURI: info.path,
	}
	if info.query != "" {
		r.req.RequestURI += "?" + info.query
	}
	return r.p.cfg.SkipTrace(&r.req)
}

// clientRequest starts a new stream: legs, trace context, and the re-encoded
// head upstream.
func (r *h2Relay) clientRequest(id uint32, end bool) error {
	srvStart := time.Now()
	if r.reqTruncated {
		return r.answerLocally(id, end, http.StatusRequestHeaderFieldsTooLarge)
	}
	info, grpc, ok := r.requestInfo()
	if r.reqInvalid || !ok || end && r.reqLength > 0 {
		// Malformed (RFC 9113 §8.1.1): never forwarded.
		return r.resetLocally(id, end, http2.ErrCodeProtocol)
	}
	p := r.p
	h := r.traceHeader()
	skip := p.cfg.Sampler != nil && p.cfg.SkipTrace != nil && r.skipTrace(&info, h)
	st := h2StreamPool.Get().(*h2Stream)
	p.inferNotLinked(h)
	p.beginLegs(&st.l, info, h, skip, srvStart)
	st.id, st.grpc, st.responded = id, grpc, false
	if grpc && Protocol(r.fl.proto.Load()) != ProtocolGRPC {
		r.fl.setProtocol(ProtocolGRPC)
	}
	// The connection was dialed with the first stream: no request waits for it.
	now := time.Now()
	st.l.dialStart, st.l.cliStart = srvStart, now
	if end {
		st.l.sent = now
	}

	r.mu.Lock()
	switch {
	case r.closing || id > r.refuseAbove:
		// After a GOAWAY: the client knows the stream was not processed.
		r.mu.Unlock()
		h2StreamPool.Put(st)
		return nil
	case len(r.streams) >= h2MaxStreams || len(r.open) >= h2MaxStreams:
		// Streams whose response ended but whose client half is open count
		// too (RFC 9113 §5.1.2).
		r.mu.Unlock()
		h2StreamPool.Put(st)
		return r.resetLocally(id, end, http2.ErrCodeRefusedStream)
	}
	st.window = r.initialWindow
	r.streams[id] = st
	r.maxSeen = id
	r.mu.Unlock()
	r.opened++
	if end {
		r.recordClosed(id)
	} else {
		r.open[id] = h2ClientStream{declared: r.reqLength}
	}

	r.beginEncode()
	for _, f := range r.reqFields {
		if _, ok := h2TraceHeader(f.Name); ok {
			continue
		}
		r.enc.WriteField(f)
	}
	for _, t := range h2TraceHeaders {
		for _, v := range h[t.key] {
			r.enc.WriteField(hpack.HeaderField{Name: t.name, Value: v})
		}
	}
	r.writeHeaderBlock(id, end, r.prio[:r.prioLen])
	return nil
}

func (r *h2Relay) beginEncode() {
	r.encBuf.Reset()
	if v := r.upTableSize.Load(); v != r.encTable {
		r.encTable = v
		v = min(v, h2TableSize)
		r.enc.SetMaxDynamicTableSizeLimit(v)
		r.enc.SetMaxDynamicTableSize(v)
	}
}

// writeHeaderBlock writes r.encBuf upstream as HEADERS and as many CONTINUATION
// frames as the upstream's frame size asks for.
func (r *h2Relay) writeHeaderBlock(id uint32, end bool, prio []byte) {
	o := &r.uw
	block := r.encBuf.Bytes()
	size := int(r.upFrameSize.Load())
	var flags http2.Flags
	if end {
		flags |= http2.FlagHeadersEndStream
	}
	if len(prio) > 0 {
		flags |= http2.FlagHeadersPriority
	}
	n := min(len(block), size-len(prio))
	if n == len(block) {
		flags |= http2.FlagHeadersEndHeaders
	}
	o.writeHeader(len(prio)+n, http2.FrameHeaders, flags, id)
	o.bw.Write(prio)
	o.bw.Write(block[:n])
	for block = block[n:]; len(block) > 0; block = block[n:] {
		n = min(len(block), size)
		flags = 0
		if n == len(block) {
			flags = http2.FlagContinuationEndHeaders
		}
		o.writeHeader(n, http2.FrameContinuation, flags, id)
		o.bw.Write(block[:n])
	}
}

// clientTrailers relays a header block on a forwarded stream whose client half is
// open: trailers, which end the stream (RFC 9113 §8.1).
func (r *h2Relay) clientTrailers(id uint32, end bool) error {
	bad := r.reqTruncated || r.reqInvalid || !end
	for _, f := range r.reqFields {
		bad = bad || strings.HasPrefix(f.Name, ":") || connectionSpecific(f.Name)
	}
	if cs := r.open[id]; end && cs.declared >= 0 && cs.received != cs.declared {
		bad = true // the content ended short of its content-length (§8.1.1)
	}
	if bad {
		// A malformed trailer section ends the stream on both sides.
		return r.clientStreamError(id, http2.ErrCodeProtocol, "malformed trailers")
	}
	delete(r.open, id)
	r.recordClosed(id)
	r.beginEncode()
	for _, f := range r.reqFields {
		r.enc.WriteField(f)
	}
	r.writeHeaderBlock(id, end, nil)
	if end {
		now := time.Now()
		r.mu.Lock()
		if st := r.streams[id]; st != nil {
			st.l.sent = now
		}
		r.mu.Unlock()
	}
	return nil
}

// answerLocally answers a stream with a bodiless status; it never reaches the
// upstream.
func (r *h2Relay) answerLocally(id uint32, end bool, status int) error {
	block := appendStaticField(r.cscratch[:0], ":status", strconv.Itoa(status))
	b := appendH2FrameHeader(r.cframes[:0], len(block), http2.FrameHeaders,
		http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, id)
	b = append(b, block...)
	if !end {
		// The response is complete: the client can stop sending (RFC 9113 §8.1).
		b = appendRSTStream(b, id, http2.ErrCodeNo)
		r.markLocal(id)
	} else {
		r.recordClosed(id)
	}
	r.cframes = b
	return r.sendClient(b)
}

func (r *h2Relay) resetLocally(id uint32, end bool, code http2.ErrCode) error {
	if !end {
		r.markLocal(id)
	} else {
		r.recordClosed(id)
	}
	r.cframes = appendRSTStream(r.cframes[:0], id, code)
	return r.sendClient(r.cframes)
}

// markLocal remembers a stream answered here, so that what the client still sends
// on it is dropped.
func (r *h2Relay) markLocal(id uint32) {
	if r.local == nil {
		r.local = make(map[uint32]struct{})
	}
	if len(r.local) >= h2MaxLocal {
		// Frames on streams forgotten here reach the upstream, which resets
		// them as closed.
		clear(r.local)
	}
	r.local[id] = struct{}{}
}

// appendStaticField appends a field as a literal without indexing (RFC 7541
// §6.2.2), its name by static table index when it has one: the client's dynamic
// table, which the upstream's encoder owns, stays as it was.
func appendStaticField(dst []byte, name, value string) []byte {
	idx := uint64(0)
	switch name {
	case ":status":
		idx = 8
	case "content-type":
		idx = 31
	}
	if idx > 0 {
		dst = appendHpackInt(dst, 4, 0, idx)
	} else {
		dst = append(dst, 0)
		dst = appendHpackInt(dst, 7, 0, uint64(len(name)))
		dst = append(dst, name...)
	}
	dst = appendHpackInt(dst, 7, 0, uint64(len(value)))
	return append(dst, value...)
}

// appendHpackInt appends i with an n-bit prefix (RFC 7541 §5.1).
func appendHpackInt(dst []byte, n uint, first byte, i uint64) []byte {
	k := uint64(1)<<n - 1
	if i < k {
		return append(dst, first|byte(i))
	}
	dst = append(dst, first|byte(k))
	for i -= k; i >= 128; i >>= 7 {
		dst = append(dst, byte(0x80|i&0x7f))
	}
	return append(dst, byte(i))
}
