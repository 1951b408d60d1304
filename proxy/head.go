package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
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
	key  string // canonical, the key in head.header
	line string // "Name: value" as received, without its line ending
}

// head is a parsed HTTP/1 message head. Its strings all point into raw, the one
// allocation per head. Forwarding re-emits the received lines (fields), so names
// keep their case and order; header is the lookup view, and deleting a key from it
// drops its lines from the forwarded head.
type head struct {
	raw    string
	method string // request
	target string // request
	status int    // response
	reason string // response
	minor  int    // HTTP/1.minor
	header http.Header
	fields []field
	values []string // backing store for header's value slices
}

func (h *head) reset(raw string) {
	if h.header == nil {
		h.header = make(http.Header, 16)
	}
	clear(h.header)
	*h = head{raw: raw, header: h.header, fields: h.fields[:0], values: h.values[:0]}
}

// forget drops every reference into the raw head, so that a head kept between
// requests (an idle connection's) does not keep the last one alive. Slices and
// the map are kept for reuse unless a large head grew them.
func (h *head) forget() {
	fields, values, header := h.fields, h.values, h.header
	clear(fields[:cap(fields)]) // pipelined heads reset without forgetting
	clear(values[:cap(values)])
	if cap(fields) > 64 || cap(values) > 64 {
		fields, values = nil, nil
	}
	if len(header) > 32 {
		header = nil // maps do not shrink
	}
	clear(header)
	*h = head{header: header, fields: fields[:0], values: values[:0]}
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
	if err := h.parseFields(rest, errHeaderField); err != nil {
		return err
	}
	// RFC 9112 §3.2: a request with no Host (HTTP/1.1) or more than one is a
	// 400. Checked here, with the head, so nothing that accepts a head can
	// forward two hosts that the next hop would read differently.
	if hosts := len(h.header["Host"]); hosts > 1 || hosts == 0 && minor == 1 {
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
	return h.parseFields(rest, errResponseField)
}

func (h *head) parseFields(s string, malformed *protocolError) error {
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
		if vv, ok := h.header[key]; ok {
			h.header[key] = append(vv, value)
			continue
		}
		h.values = append(h.values, value)
		n := len(h.values)
		h.header[key] = h.values[n-1 : n : n]
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
	te, cl := h.header["Transfer-Encoding"], h.header["Content-Length"]
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
	if te := h.header["Transfer-Encoding"]; len(te) > 0 && h.minor == 1 {
		chunked, others := transferCodings(te)
		if !chunked || others {
			return framing{}, errCoding
		}
		return framing{kind: bodyChunked}, nil
	}
	if cl := h.header["Content-Length"]; len(cl) > 0 {
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

// connection reads the Connection header and deletes the fields it lists from
// header (they are for this hop only), except those that frame the message or
// name its host: "Connection: Content-Length" must not strip a length we then
// forward a body without.
func (h *head) connection() connOptions {
	var o connOptions
	for _, v := range h.header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
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
					delete(h.header, key)
				}
			}
		}
	}
	return o
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
