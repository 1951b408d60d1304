package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"time"
)

// h2Preface is what an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

const (
	// maxMethodLen bounds the first word we are willing to read as a method.
	maxMethodLen = 24
	// maxDetectLine bounds how much of a request line with an unknown method we
	// wait for before calling the connection opaque. It fits in a connection
	// reader's buffer.
	maxDetectLine = 2 << 10
)

// classify decides a connection's protocol from its first bytes. more reports that
// b is too short to decide. A decision, once made, holds for every extension of b
// (FuzzClassify checks this), so it can be made on whatever bytes have arrived.
//
// HTTP/1 is recognised from the method: an RFC 9110 method followed by a space
// decides at once, so a malformed request still reaches the HTTP parser and gets
// its 400 instead of being relayed. Other upper-case words need the whole request
// line to end in HTTP/1.x, which keeps text protocols such as Redis' inline
// commands opaque.
func classify(b []byte) (p Protocol, more bool) {
	if len(b) == 0 {
		return ProtocolUnknown, true
	}
	if b[0] == 0x16 { // TLS handshake record
		return ProtocolTLS, false
	}
	if n := min(len(b), len(h2Preface)); string(b[:n]) == h2Preface[:n] {
		if n == len(h2Preface) {
			return ProtocolHTTP2, false
		}
		return ProtocolUnknown, true
	}
	i := 0
	for i < len(b) && i <= maxMethodLen && isMethodByte(b[i], i) {
		i++
	}
	switch {
	case i > maxMethodLen:
		return ProtocolOpaque, false
	case i == len(b):
		return ProtocolUnknown, true
	case i == 0 || b[i] != ' ':
		return ProtocolOpaque, false
	case knownMethod(b[:i]):
		return ProtocolHTTP1, false
	}
	line := b[i:min(len(b), maxDetectLine)]
	end := bytes.IndexByte(line, '\n')
	if end < 0 {
		if len(b) >= maxDetectLine {
			return ProtocolOpaque, false
		}
		return ProtocolUnknown, true
	}
	line = bytes.TrimSuffix(line[:end], []byte{'\r'})
	if bytes.HasSuffix(line, []byte(" HTTP/1.1")) || bytes.HasSuffix(line, []byte(" HTTP/1.0")) {
		return ProtocolHTTP1, false
	}
	return ProtocolOpaque, false
}

// isMethodByte accepts the characters of upper-case method names (WebDAV's
// VERSION-CONTROL included); the first must be a letter.
func isMethodByte(c byte, i int) bool {
	return 'A' <= c && c <= 'Z' || i > 0 && (c == '-' || c == '_')
}

func knownMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return true
	}
	return false
}

// errNothingSent reports a connection closed before its first byte.
var errNothingSent = errors.New("connection closed before sending anything")

// detect peeks at a new connection until classify decides. A client that sends
// nothing within timeout is waiting for the server to speak first (MySQL, SMTP),
// and one that stalls mid-way is not worth waiting for: both are spliced as
// opaque. The bytes stay buffered in br for whoever serves the connection.
func detect(c net.Conn, br *bufio.Reader, timeout time.Duration) (Protocol, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return ProtocolUnknown, err
	}
	defer c.SetReadDeadline(time.Time{})
	for {
		b, _ := br.Peek(br.Buffered())
		p, more := classify(b)
		if !more {
			return p, nil
		}
		if len(b) >= maxDetectLine {
			return ProtocolOpaque, nil
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			if len(b) == 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
				return ProtocolUnknown, errNothingSent
			}
			return ProtocolOpaque, nil
		}
	}
}
