package proxy

// Request header blocks on a relayed HTTP/2 connection: decoded from the client,
// given their trace context through the legs machinery, and encoded again toward
// the upstream; and the few answers the relay gives itself.

import (
	"encoding/binary"
	"net/http"
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
	if v := r.reqTableMax.Load(); v != r.up.reqTable {
		r.up.reqDec.SetAllowedMaxDynamicTableSize(v)
		r.up.reqTable = v
	}
	r.up.reqFields, r.up.reqSize, r.up.reqTruncated, r.up.reqInvalid = r.up.reqFields[:0], 0, false, false
	r.up.reqDec.SetEmitEnabled(true)

	if int(fh.length) > r.maxBlockFrame() {
		return h2Error(http2.ErrCodeProtocol, "header block too large")
	}
	r.up.cscratch = grow(r.up.cscratch, int(fh.length))
	payload := r.up.cscratch[:fh.length]
	if err := readFull(br, o, payload); err != nil {
		return err
	}
	frag, prio, err := headerFragment(fh, payload)
	if err != nil {
		return err
	}
	r.up.prioLen = copy(r.up.prio[:], prio)
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
		r.up.cscratch = grow(r.up.cscratch, int(next.length))
		frag := r.up.cscratch[:next.length]
		if err := readFull(br, o, frag); err != nil {
			return err
		}
		if err := r.decodeRequestFragment(frag); err != nil {
			return err
		}
		flags = next.flags
	}
	if err := r.up.reqDec.Close(); err != nil {
		return h2Error(http2.ErrCodeCompression, err.Error())
	}
	end := fh.flags.Has(http2.FlagHeadersEndStream)
	// A stream cannot depend on itself (RFC 9113 §5.3.1).
	selfDep := len(prio) == 5 && binary.BigEndian.Uint32(prio)&h2MaxStreamID == id
	if id > r.up.lastClientID {
		if id%2 == 0 {
			return h2Error(http2.ErrCodeProtocol, "client opened an even stream")
		}
		r.up.lastClientID = id
		if selfDep {
			r.fl.breaches.Add(1)
			return r.resetLocally(id, end, http2.ErrCodeProtocol)
		}
		return r.clientRequest(id, end)
	}
	// A stream opened before: trailers, if the client's half of it is open
	// (RFC 9113 §5.1, §8.1).
	if _, open := r.up.open[id]; open {
		if selfDep {
			return r.clientStreamError(id, http2.ErrCodeProtocol, "stream depends on itself")
		}
		return r.clientTrailers(id, end)
	}
	if _, local := r.up.local[id]; local || id > r.maxSeen && r.refused(id) {
		if end {
			delete(r.up.local, id)
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
func (r *h2Relay) maxBlockFrame() int { return 2*int(r.up.maxHeaderList) + h2FrameHeaderLen + 256 + 5 }

func (r *h2Relay) decodeRequestFragment(frag []byte) error {
	// As x/net's server: a fragment far beyond what the list may still hold is
	// not worth decoding (a CONTINUATION flood), and ends the connection.
	remain := uint32(0)
	if !r.up.reqTruncated {
		remain = r.up.maxHeaderList - r.up.reqSize
	}
	if len(frag) > 2*int(remain)+h2FrameHeaderLen && len(frag) > 0 {
		return h2Error(http2.ErrCodeProtocol, "header block too large")
	}
	if _, err := r.up.reqDec.Write(frag); err != nil {
		return h2Error(http2.ErrCodeCompression, err.Error())
	}
	return nil
}

// requestField collects a decoded request field, within the header list limit.
func (r *h2Relay) requestField(f hpack.HeaderField) {
	size := f.Size()
	if r.up.reqSize+size > r.up.maxHeaderList {
		r.up.reqTruncated = true
		r.up.reqDec.SetEmitEnabled(false) // still decoded, for the dynamic table
		return
	}
	r.up.reqSize += size
	if !validH2Field(f) {
		r.up.reqInvalid = true
	}
	r.up.reqFields = append(r.up.reqFields, f)
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

// h2TraceFields are the header fields the legs machinery reads and rewrites:
// spans' trace headers and the sampling override, as HTTP/2 names them (lower
// case) and as http.Header keys. They are emitted after the request's other
// fields, from the http.Header the machinery left.
var h2TraceFields = func() (f []struct{ name, key string }) {
	keys := spans.TraceHeaders()
	for _, k := range append(keys[:], spans.OverrideHeader) {
		f = append(f, struct{ name, key string }{strings.ToLower(k), k})
	}
	return f
}()

func h2TraceHeader(name string) (key string, ok bool) {
	for _, f := range h2TraceFields {
		if f.name == name {
			return f.key, true
		}
	}
	return "", false
}

// h2ConnectionFields are connectionFields as HTTP/2 names them.
var h2ConnectionFields = func() (f []string) {
	for _, k := range connectionFields {
		f = append(f, strings.ToLower(k))
	}
	return f
}()

// connectionSpecific reports fields HTTP/2 forbids (RFC 9113 §8.2.2): they make a
// message malformed.
func connectionSpecific(name string) bool {
	for _, f := range h2ConnectionFields {
		if f == name {
			return true
		}
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
func (r *h2Relay) requestInfo() (info RequestInfo, grpc, ok bool) {
	info = r.fl.request(ProtocolHTTP2, "2")
	var seen uint8
	var contentType, host, path, protocol string
	regular := false
	r.up.reqLength = -1
	for _, f := range r.up.reqFields {
		if !strings.HasPrefix(f.Name, ":") {
			regular = true
			switch f.Name {
			case "content-type":
				contentType = f.Value
			case "user-agent":
				info.UserAgent = f.Value
			case "host":
				host = f.Value
			case "content-length":
				n, ok := parseDecimal(f.Value)
				if !ok || r.up.reqLength >= 0 && n != r.up.reqLength {
					return info, false, false
				}
				r.up.reqLength = n
			case "te":
				// The only TE an HTTP/2 request may carry (RFC 9113 §8.2.2).
				if !strings.EqualFold(f.Value, "trailers") {
					return info, false, false
				}
			default:
				if connectionSpecific(f.Name) {
					return info, false, false
				}
			}
			continue
		}
		if regular {
			return info, false, false // pseudo-headers come first (RFC 9113 §8.3)
		}
		var bit uint8
		switch f.Name {
		case ":method":
			bit, info.Method = pseudoMethod, f.Value
		case ":path":
			bit, path = pseudoPath, f.Value
		case ":authority":
			bit, info.Host = pseudoAuthority, f.Value
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
	case info.Method == "":
		return info, false, false
	case info.Method == http.MethodConnect && seen&pseudoProtocol == 0:
		if seen&(pseudoScheme|pseudoPath) != 0 || info.Host == "" {
			return info, false, false
		}
	case seen&pseudoProtocol != 0 && (info.Method != http.MethodConnect || protocol == ""),
		seen&pseudoScheme == 0, path == "":
		return info, false, false
	}
	if info.Host == "" {
		info.Host = host
	}
	info.Path, info.Query, _ = strings.Cut(path, "?")
	if isGRPC(contentType) {
		info.Protocol, grpc = ProtocolGRPC, true
	}
	return info, grpc, true
}

// traceHeader fills r.up.hdr with what the legs machinery reads: the trace headers
// and captured headers.
func (r *h2Relay) traceHeader() http.Header {
	r.up.hdr.reset()
	p := r.p
	for _, f := range r.up.reqFields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		if key, ok := h2TraceHeader(f.Name); ok {
			r.up.hdr.add(key, f.Value)
			continue
		}
		for _, c := range p.tr.capture {
			if c.field == f.Name {
				r.up.hdr.add(c.key, f.Value)
			}
		}
	}
	return r.up.hdr.h
}

// clientRequest starts a new stream: legs, trace context, and the re-encoded
// head upstream.
func (r *h2Relay) clientRequest(id uint32, end bool) error {
	srvStart := time.Now()
	if r.up.reqTruncated {
		return r.answerLocally(id, end, http.StatusRequestHeaderFieldsTooLarge)
	}
	info, grpc, ok := r.requestInfo()
	if r.up.reqInvalid || !ok || end && r.up.reqLength > 0 {
		// Malformed (RFC 9113 §8.1.1): never forwarded.
		r.fl.breaches.Add(1)
		return r.resetLocally(id, end, http2.ErrCodeProtocol)
	}
	p := r.p
	h := r.traceHeader()
	st := h2StreamPool.Get().(*h2Stream)
	p.inferNotLinked(h)
	p.tr.begin(&st.l, info, h, srvStart)
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
	case len(r.streams) >= h2MaxStreams || len(r.up.open) >= h2MaxStreams:
		// Streams whose response ended but whose client half is open count
		// too (RFC 9113 §5.1.2).
		r.mu.Unlock()
		h2StreamPool.Put(st)
		return r.resetLocally(id, end, http2.ErrCodeRefusedStream)
	}
	st.window = r.up.initialWindow
	r.streams[id] = st
	r.maxSeen = id
	r.mu.Unlock()
	r.up.opened++
	if end {
		r.recordClosed(id)
	} else {
		r.up.open[id] = h2ClientStream{declared: r.up.reqLength}
	}

	r.beginEncode()
	for _, f := range r.up.reqFields {
		if _, ok := h2TraceHeader(f.Name); ok {
			continue
		}
		r.up.enc.WriteField(f)
	}
	for _, t := range h2TraceFields {
		for _, v := range h[t.key] {
			r.up.enc.WriteField(hpack.HeaderField{Name: t.name, Value: v})
		}
	}
	r.writeHeaderBlock(id, end, r.up.prio[:r.up.prioLen])
	return nil
}

func (r *h2Relay) beginEncode() {
	r.up.encBuf.Reset()
	if v := r.upTableSize.Load(); v != r.up.encTable {
		r.up.encTable = v
		v = min(v, h2TableSize)
		r.up.enc.SetMaxDynamicTableSizeLimit(v)
		r.up.enc.SetMaxDynamicTableSize(v)
	}
}

// writeHeaderBlock writes r.up.encBuf upstream as HEADERS and as many CONTINUATION
// frames as the upstream's frame size asks for.
func (r *h2Relay) writeHeaderBlock(id uint32, end bool, prio []byte) {
	o := &r.uw
	block := r.up.encBuf.Bytes()
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
	bad := r.up.reqTruncated || r.up.reqInvalid || !end
	for _, f := range r.up.reqFields {
		bad = bad || strings.HasPrefix(f.Name, ":") || connectionSpecific(f.Name)
	}
	if cs := r.up.open[id]; end && cs.declared >= 0 && cs.received != cs.declared {
		bad = true // the content ended short of its content-length (§8.1.1)
	}
	if bad {
		// A malformed trailer section ends the stream on both sides.
		return r.clientStreamError(id, http2.ErrCodeProtocol, "malformed trailers")
	}
	delete(r.up.open, id)
	r.recordClosed(id)
	r.beginEncode()
	for _, f := range r.up.reqFields {
		r.up.enc.WriteField(f)
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
	block := appendStaticField(r.up.cscratch[:0], ":status", strconv.Itoa(status))
	b := appendH2FrameHeader(r.up.cframes[:0], len(block), http2.FrameHeaders,
		http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, id)
	b = append(b, block...)
	if !end {
		// The response is complete: the client can stop sending (RFC 9113 §8.1).
		b = appendRSTStream(b, id, http2.ErrCodeNo)
		r.markLocal(id)
	} else {
		r.recordClosed(id)
	}
	r.up.cframes = b
	return r.sendClient(b)
}

func (r *h2Relay) resetLocally(id uint32, end bool, code http2.ErrCode) error {
	if !end {
		r.markLocal(id)
	} else {
		r.recordClosed(id)
	}
	r.up.cframes = appendRSTStream(r.up.cframes[:0], id, code)
	return r.sendClient(r.up.cframes)
}

// markLocal remembers a stream answered here, so that what the client still sends
// on it is dropped.
func (r *h2Relay) markLocal(id uint32) {
	if r.up.local == nil {
		r.up.local = make(map[uint32]struct{})
	}
	if len(r.up.local) >= h2MaxLocal {
		// Frames on streams forgotten here reach the upstream, which resets
		// them as closed.
		clear(r.up.local)
	}
	r.up.local[id] = struct{}{}
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
