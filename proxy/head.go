package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"sync"

	"github.com/hoptrace/hoptrace/spans"
)

// protocolError is a malformed message. status is the response it earns when it
// comes from a client.
type protocolError struct {
	status int
	msg    string
}

func (e *protocolError) Error() string { return e.msg }

var (
	errTooLarge       = &protocolError{http.StatusRequestHeaderFieldsTooLarge, "header fields too large"}
	errBlankLines     = &protocolError{http.StatusBadRequest, "too many empty lines before the start line"}
	errRequestLine    = &protocolError{http.StatusBadRequest, "malformed request line"}
	errStatusLine     = &protocolError{http.StatusBadGateway, "malformed status line"}
	errVersion        = &protocolError{http.StatusHTTPVersionNotSupported, "unsupported http version"}
	errHeaderField    = &protocolError{http.StatusBadRequest, "malformed header field"}
	errObsFold        = &protocolError{http.StatusBadRequest, "obsolete header line folding"}
	errHost           = &protocolError{http.StatusBadRequest, "missing or repeated host header"}
	errContentLength  = &protocolError{http.StatusBadRequest, "invalid content-length"}
	errLengthAndChunk = &protocolError{http.StatusBadRequest, "both content-length and transfer-encoding"}
	errChunkedNotLast = &protocolError{http.StatusBadRequest, "transfer-encoding does not end in chunked"}
	errCoding         = &protocolError{http.StatusNotImplemented, "unsupported transfer-encoding"}
	errCodingHTTP10   = &protocolError{http.StatusBadRequest, "transfer-encoding in an http/1.0 message"}
	errConnectBody    = &protocolError{http.StatusBadRequest, "connect request with a body"}
	errResponseField  = &protocolError{http.StatusBadGateway, "malformed response header field"}
)

// maxBlankLines bounds the empty lines tolerated before a start line (RFC 9112
// §2.2 asks for at least one; clients send one after a body by mistake).
const maxBlankLines = 4

// readHead reads one message head, start line through the empty line, into buf
// without interpreting it. A head longer than limit is errTooLarge. A stream that
// ends before any byte is io.EOF; one that ends mid-head is io.ErrUnexpectedEOF.
func readHead(br *bufio.Reader, limit int, buf []byte) ([]byte, error) {
	buf = buf[:0]
	lineStart, blanks := 0, 0
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > limit {
			return buf, errTooLarge
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				if len(buf) == 0 {
					return buf, io.EOF
				}
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
		line := buf[lineStart:]
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			if lineStart > 0 {
				return buf, nil
			}
			if blanks++; blanks > maxBlankLines {
				return buf, errBlankLines
			}
			buf = buf[:0]
			continue
		}
		lineStart = len(buf)
	}
}

// headBufs holds the buffers heads are read into. A head is parsed from its own
// copy (a string), so the buffer is needed only while reading: pooled, no idle
// connection holds one. Buffers grown beyond maxPooledHead by a large head are
// left to the collector rather than pinned in the pool.
var headBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

const maxPooledHead = 16 << 10

// readHeadString is readHead into a pooled buffer, returning the head as a
// string of its own. partial reports whether any byte of a failed head arrived.
func readHeadString(br *bufio.Reader, limit int) (raw string, partial bool, err error) {
	bp := headBufs.Get().(*[]byte)
	b, err := readHead(br, limit, *bp)
	if err == nil {
		raw = string(b)
	}
	partial = len(b) > 0
	if cap(b) <= maxPooledHead {
		*bp = b[:0]
		headBufs.Put(bp)
	}
	return raw, partial, err
}

// headBuffered reports whether br holds a whole head: after any empty lines
// before the start line, a line end followed by an empty line.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	b = b[i:]
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// field is one header line of a head.
type field struct {
	key  string // canonical
	line string // "Name: value" as received, without its line ending
	drop bool   // listed in Connection: neither forwarded nor looked up
}

// value is the field's value, without the whitespace around it. The name's
// canonical form has the name's length, so the value starts after it.
func (f *field) value() string { return trimOWS(f.line[len(f.key)+1:]) }

// head is a parsed HTTP/1 message head. Its strings all point into raw, the one
// allocation per head. Forwarding re-emits the received lines (fields), so names
// keep their case and order. Look-ups scan the fields: a head has a handful,
// and comparing their keys costs less than hashing every one into a map and
// every looked-up name again (BenchmarkHeadPath).
type head struct {
	raw    string
	method string // request
	target string // request
	status int    // response
	reason string // response
	minor  int    // HTTP/1.minor
	fields []field
	// legs is what the tracing reads and writes as an http.Header: a
	// request's trace headers and sampling override, and the fields
	// Config.CaptureHeaders names. Most messages have none of them, and an
	// empty map answers look-ups without hashing. A request's trace headers are
	// forwarded from here (as spans.Inject left them), never as received.
	legs fieldMap
	// capture is Config.CaptureHeaders, set once per connection.
	capture []capturedHeader
}

func (h *head) reset(raw string) {
	h.legs.reset()
	*h = head{raw: raw, fields: h.fields[:0], legs: h.legs, capture: h.capture}
}

// forget drops every reference into the raw head, so that a head kept between
// requests (an idle connection's) does not keep the last one alive. The fields
// and the legs' map are kept for reuse unless a large head grew them.
func (h *head) forget() {
	fields := h.fields
	clear(fields[:cap(fields)]) // pipelined heads reset without forgetting
	if cap(fields) > 64 {
		fields = nil
	}
	h.legs.forget()
	*h = head{fields: fields[:0], legs: h.legs, capture: h.capture}
}

// values appends the values of the fields named key (canonical) to dst.
func (h *head) values(dst []string, key string) []string {
	for i := range h.fields {
		if f := &h.fields[i]; f.key == key && !f.drop {
			dst = append(dst, f.value())
		}
	}
	return dst
}

// value returns the value of the first field named key, "" if there is none.
func (h *head) value(key string) string {
	for i := range h.fields {
		if f := &h.fields[i]; f.key == key && !f.drop {
			return f.value()
		}
	}
	return ""
}

// count returns the number of fields named key.
func (h *head) count(key string) int {
	n := 0
	for i := range h.fields {
		if f := &h.fields[i]; f.key == key && !f.drop {
			n++
		}
	}
	return n
}

// parseRequest parses a request head read by readHead.
func (h *head) parseRequest(raw string) error {
	h.reset(raw)
	line, rest := cutLine(raw)
	method, rest1, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 || !isToken(method) || !validTarget(method, target) {
		return errRequestLine
	}
	minor, err := parseVersion(version, errRequestLine)
	if err != nil {
		return err
	}
	h.method, h.target, h.minor = method, target, minor
	if err := h.parseFields(rest, errHeaderField, true); err != nil {
		return err
	}
	// RFC 9112 §3.2: a request with no Host (HTTP/1.1) or more than one is a
	// 400. Checked here, with the head, so nothing that accepts a head can
	// forward two hosts that the next hop would read differently.
	if hosts := h.count("Host"); hosts > 1 || hosts == 0 && minor == 1 {
		return errHost
	}
	return nil
}

// parseResponse parses a response head read by readHead.
func (h *head) parseResponse(raw string) error {
	h.reset(raw)
	line, rest := cutLine(raw)
	version, rest1, ok := strings.Cut(line, " ")
	if !ok || len(rest1) < 3 || len(rest1) > 3 && rest1[3] != ' ' {
		return errStatusLine
	}
	minor, err := parseVersion(version, errStatusLine)
	if err != nil {
		return errStatusLine
	}
	code := rest1[:3]
	if code[0] < '1' || code[0] > '5' || !isDigit(code[1]) || !isDigit(code[2]) {
		return errStatusLine
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if len(rest1) > 3 {
		h.reason = rest1[4:]
		if !validValue(h.reason) {
			return errStatusLine
		}
	}
	h.minor = minor
	return h.parseFields(rest, errResponseField, false)
}

// parseFields parses the header fields of a request (or a response), noting
// those the tracing reads in h.legs.
func (h *head) parseFields(s string, malformed *protocolError, request bool) error {
	for s != "" {
		var line string
		line, s = cutLine(s)
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if malformed == errHeaderField {
				return errObsFold
			}
			return malformed
		}
		name, value, ok := strings.Cut(line, ":")
		value = trimOWS(value)
		// No whitespace is allowed between name and colon (RFC 9112 §5.1): a
		// classic smuggling vector, and isToken rejects it.
		if !ok || !isToken(name) || !validValue(value) {
			return malformed
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		h.fields = append(h.fields, field{key: key, line: line})
		if request && (spans.IsTraceHeader(key) || key == spans.OverrideHeader) || isCaptured(h.capture, key) {
			h.legs.add(key, value)
		}
	}
	return nil
}

// cutLine splits off the first line of s, without its LF or CRLF ending. A bare
// CR stays in the line, where the validity checks reject it.
func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func parseVersion(v string, malformed *protocolError) (minor int, err error) {
	switch v {
	case "HTTP/1.1":
		return 1, nil
	case "HTTP/1.0":
		return 0, nil
	}
	if len(v) == 8 && v[:5] == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]) {
		return 0, errVersion
	}
	return 0, malformed
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// tokenChars marks RFC 9110 tchar.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChars[s[i]] {
			return false
		}
	}
	return true
}

// validTarget accepts a request-target in the form its method calls for (RFC 9112
// §3.2), without whitespace or control bytes. The proxy forwards it verbatim; it
// only needs to be unambiguous on the wire and mean the same to the next parser.
func validTarget(method, t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c <= ' ' || c == 0x7f {
			return false
		}
		// pct-encoded is "%" HEXDIG HEXDIG (RFC 3986 §2.1): anything else is
		// malformed, and the next parser (net/http, say) would refuse it.
		if c == '%' && (i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2])) {
			return false
		}
	}
	switch {
	case method == "CONNECT":
		// authority-form: host:port
		host, port, ok := strings.Cut(t, ":")
		return ok && host != "" && port != "" && !strings.ContainsAny(t, "/?#@")
	case t[0] == '/':
		return true // origin-form
	case t == "*":
		return method == "OPTIONS"
	}
	// absolute-form: scheme ":" hier-part
	scheme, _, ok := strings.Cut(t, ":")
	if !ok || scheme == "" || !('a' <= scheme[0]|0x20 && scheme[0]|0x20 <= 'z') {
		return false
	}
	for i := 1; i < len(scheme); i++ {
		c := scheme[i]
		if !('a' <= c|0x20 && c|0x20 <= 'z' || isDigit(c) || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validValue accepts field-content: visible characters, spaces, tabs and
// obs-text. CR, LF and NUL never pass, so nothing can split a forwarded line.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// bodyKind is how a message body is delimited.
type bodyKind uint8

const (
	bodyNone       bodyKind = iota
	bodyLength              // Content-Length bytes
	bodyChunked             // chunked transfer coding
	bodyUntilClose          // responses only: until the connection closes
)

type framing struct {
	kind bodyKind
	n    int64 // bodyLength; may be 0, which is still sent as Content-Length: 0
}

// hasBody reports whether bytes follow the head.
func (f framing) hasBody() bool { return f.kind != bodyNone && (f.kind != bodyLength || f.n > 0) }

// requestFraming applies RFC 9112 §6.3 strictly: anything a server and a proxy
// could read differently is rejected rather than guessed at, so no request can
// be smuggled past us.
func (h *head) requestFraming() (framing, error) {
	var teb, clb [1]string
	te, cl := h.values(teb[:0], "Transfer-Encoding"), h.values(clb[:0], "Content-Length")
	if len(te) > 0 {
		switch {
		case h.minor == 0:
			return framing{}, errCodingHTTP10
		case len(cl) > 0:
			return framing{}, errLengthAndChunk
		}
		chunked, others := transferCodings(te)
		switch {
		case !chunked:
			return framing{}, errChunkedNotLast
		case others:
			return framing{}, errCoding
		}
		return framing{kind: bodyChunked}, nil
	}
	if len(cl) > 0 {
		n, ok := parseContentLength(cl)
		if !ok {
			return framing{}, errContentLength
		}
		return framing{kind: bodyLength, n: n}, nil
	}
	return framing{}, nil
}

// responseFraming is RFC 9112 §6.3 for a response to a request with the given
// method. Unlike requests, a response with both headers is read as chunked (its
// Content-Length is dropped when forwarding).
func (h *head) responseFraming(method string) (framing, error) {
	if method == http.MethodHead || h.status < 200 || h.status == http.StatusNoContent || h.status == http.StatusNotModified {
		return framing{}, nil
	}
	var buf [1]string
	if te := h.values(buf[:0], "Transfer-Encoding"); len(te) > 0 && h.minor == 1 {
		chunked, others := transferCodings(te)
		if !chunked || others {
			return framing{}, errCoding
		}
		return framing{kind: bodyChunked}, nil
	}
	if cl := h.values(buf[:0], "Content-Length"); len(cl) > 0 {
		n, ok := parseContentLength(cl)
		if !ok {
			return framing{}, errContentLength
		}
		return framing{kind: bodyLength, n: n}, nil
	}
	return framing{kind: bodyUntilClose}, nil
}

// transferCodings reports whether the codings end in chunked, and whether any
// other coding (which the proxy does not implement) appears.
func transferCodings(vals []string) (chunkedLast, others bool) {
	n := 0
	for _, v := range vals {
		for c := range strings.SplitSeq(v, ",") {
			c = trimOWS(c)
			if c == "" {
				continue
			}
			if n > 0 && chunkedLast {
				others = true // chunked applied twice, or not last
			}
			chunkedLast = strings.EqualFold(c, "chunked")
			if !chunkedLast {
				others = true
			}
			n++
		}
	}
	return chunkedLast, others
}

// parseContentLength accepts one length, possibly repeated ("42, 42" or two
// fields), as RFC 9110 §8.6 allows; different values are an error.
func parseContentLength(vals []string) (int64, bool) {
	n := int64(-1)
	for _, v := range vals {
		for part := range strings.SplitSeq(v, ",") {
			m, ok := parseDecimal(trimOWS(part))
			if !ok || n >= 0 && m != n {
				return 0, false
			}
			n = m
		}
	}
	return n, n >= 0
}

func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// connectionFields are the fields that describe one connection rather than the
// message (RFC 9110 §7.6.1), as http.Header keys: no path forwards them, and
// HTTP/2 forbids them (RFC 9113 §8.2.2). TE is hop-by-hop too, but HTTP/2
// carries "te: trailers" end to end (gRPC needs it): HTTP/1 drops it with its
// framing fields (writeFields).
var connectionFields = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"}

func isConnectionField(key string) bool {
	for _, k := range connectionFields {
		if k == key {
			return true
		}
	}
	return false
}

func deleteConnectionFields(h http.Header) {
	for _, k := range connectionFields {
		delete(h, k)
	}
}

// connOptions is what a Connection header says.
type connOptions struct {
	close, keepAlive, upgrade bool
}

// connection reads the Connection header and drops the fields it lists (they
// are for this hop only), except those that frame the message or name its
// host: "Connection: Content-Length" must not strip a length we then forward a
// body without.
func (h *head) connection() connOptions {
	var o connOptions
	var buf [8]string
	listed := buf[:0]
	for i := range h.fields {
		if h.fields[i].key != "Connection" {
			continue
		}
		for tok := range strings.SplitSeq(h.fields[i].value(), ",") {
			tok = trimOWS(tok)
			switch {
			case tok == "":
			case strings.EqualFold(tok, "close"):
				o.close = true
			case strings.EqualFold(tok, "keep-alive"):
				o.keepAlive = true
			case strings.EqualFold(tok, "upgrade"):
				o.upgrade = true
			default:
				key := textproto.CanonicalMIMEHeaderKey(tok)
				switch key {
				case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade":
				default:
					listed = append(listed, key)
				}
			}
		}
	}
	h.drop(listed)
	return o
}

// drop drops the fields named in keys (canonical; keys is sorted in place) in
// one pass, searching the sorted names: a head of thousands of fields that
// lists thousands of names costs their sum, not their product.
func (h *head) drop(keys []string) {
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	for i := range h.fields {
		if _, ok := slices.BinarySearch(keys, h.fields[i].key); ok {
			h.fields[i].drop = true
		}
	}
	for k := range h.legs.h {
		if _, ok := slices.BinarySearch(keys, k); ok {
			delete(h.legs.h, k)
		}
	}
}

// hasToken reports whether a comma-separated header lists tok.
func hasToken(vals []string, tok string) bool {
	for _, v := range vals {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(trimOWS(t), tok) {
				return true
			}
		}
	}
	return false
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

// fieldMap is an http.Header emptied and refilled for every message: the
// fields of it the tracing reads and writes (head.legs, the HTTP/2 relay's
// request view). Its first fieldMapValues one-value slices share one backing
// array, so that filling it allocates nothing once a connection's first
// messages made it; beyond that each value is an allocation of its own, and a
// hostile message with many such fields does not grow what the connection keeps.
type fieldMap struct {
	h    http.Header
	vals []string
}

const fieldMapValues = 8

// reset empties the map for the next message; the map is made on first use.
func (m *fieldMap) reset() {
	if m.h == nil {
		m.h = make(http.Header, 4)
		m.vals = make([]string, 0, fieldMapValues)
	}
	clear(m.h)
	clear(m.vals)
	m.vals = m.vals[:0]
}

// forget is reset for a connection that goes idle: a map grown by a large
// message is left to the collector (maps do not shrink).
func (m *fieldMap) forget() {
	if len(m.h) > 32 {
		m.h = nil
	}
	m.reset()
}

func (m *fieldMap) add(key, v string) {
	if old, ok := m.h[key]; ok {
		m.h[key] = append(old, v)
		return
	}
	if n := len(m.vals); n < cap(m.vals) {
		m.vals = append(m.vals, v)
		m.h[key] = m.vals[n : n+1 : n+1]
		return
	}
	m.h[key] = []string{v}
}
