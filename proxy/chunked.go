package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Errors in a chunked body. Status 400 is what a client's malformed body earns;
// an upstream's gets the client a truncated response instead.
var (
	errChunkLine    = &protocolError{http.StatusBadRequest, "malformed chunk size line"}
	errChunkEnd     = &protocolError{http.StatusBadRequest, "chunk data not followed by crlf"}
	errChunkTrailer = &protocolError{http.StatusBadRequest, "malformed chunked trailer section"}
)

// chunkedReader decodes a chunked body (RFC 9112 §7.1). The proxy re-encodes what
// it forwards rather than passing chunk framing through, so extensions and odd
// sizes never reach the other side; it is strict (CRLF only, at most 16 hex
// digits) because anything lenient here is a smuggling vector somewhere else.
type chunkedReader struct {
	br      *bufio.Reader
	left    int64  // data bytes left in the current chunk
	crlf    bool   // the current chunk's data is done; its CRLF is next
	done    bool   // the last chunk and trailer section were read
	trailer []byte // trailer fields as received, each line ending in CRLF
	limit   int    // bound on the trailer section
	err     error
}

func (c *chunkedReader) reset(br *bufio.Reader, limit int) {
	*c = chunkedReader{br: br, limit: limit, trailer: c.trailer[:0]}
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	if c.left == 0 && err == nil {
		c.crlf = true
		c.advance()
	}
	return n, err
}

// ready reports whether Read can go on without waiting for the network.
func (c *chunkedReader) ready() bool {
	c.advance()
	return c.err != nil || c.done || c.left > 0 && c.br.Buffered() > 0
}

// advance reads the framing between two chunks' data, but only when all of it
// has arrived: after it, ready can tell a pause in the stream (flush now) from
// framing that merely separates two pieces of data already here.
func (c *chunkedReader) advance() {
	for c.left == 0 && !c.done && c.err == nil {
		buf, _ := c.br.Peek(c.br.Buffered())
		skip := 0
		if c.crlf {
			skip = 2
		}
		if len(buf) < skip {
			return
		}
		nl := bytes.IndexByte(buf[skip:], '\n')
		if nl < 0 {
			return
		}
		if size, ok := parseChunkSize(buf[skip : skip+nl+1]); ok && size == 0 {
			rest := buf[skip+nl+1:]
			if !bytes.HasPrefix(rest, []byte("\r\n")) && !bytes.Contains(rest, []byte("\r\n\r\n")) {
				return // the trailer section is not all here
			}
		}
		// Everything next needs is buffered: it cannot block.
		if err := c.next(); err != nil {
			c.err = err
		}
	}
}

// next reads up to the next chunk's data: the previous chunk's CRLF and a size
// line, and for the last chunk the trailer section too.
func (c *chunkedReader) next() error {
	if c.crlf {
		b, err := c.br.Peek(2)
		if err != nil {
			return unexpected(err)
		}
		if b[0] != '\r' || b[1] != '\n' {
			return errChunkEnd
		}
		c.br.Discard(2)
		c.crlf = false
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return errChunkLine
		}
		return unexpected(err)
	}
	size, ok := parseChunkSize(line)
	if !ok {
		return errChunkLine
	}
	if size > 0 {
		c.left = size
		return nil
	}
	if err := c.readTrailer(); err != nil {
		return err
	}
	c.done = true
	return nil
}

// parseChunkSize reads "hex[ext]\r\n". Extensions are ignored, but must not hide
// control characters.
func parseChunkSize(line []byte) (int64, bool) {
	n := len(line)
	if n < 3 || line[n-2] != '\r' {
		return 0, false
	}
	line = line[:n-2]
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		if !validValue(string(line[i:])) {
			return 0, false
		}
		line = line[:i]
		for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
			line = line[:len(line)-1]
		}
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var size uint64
	for _, b := range line {
		var d byte
		switch {
		case '0' <= b && b <= '9':
			d = b - '0'
		case 'a' <= b && b <= 'f':
			d = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, false
		}
		size = size<<4 | uint64(d)
	}
	if size > 1<<62 {
		return 0, false
	}
	return int64(size), true
}

// readTrailer reads the trailer section after the last chunk. Fields that frame
// or route a message are not allowed in trailers (RFC 9110 §6.5.1) and are dropped.
func (c *chunkedReader) readTrailer() error {
	total := 0
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return errChunkTrailer
			}
			return unexpected(err)
		}
		total += len(line)
		n := len(line)
		if n < 2 || line[n-2] != '\r' || total > c.limit {
			return errChunkTrailer
		}
		if n == 2 {
			return nil
		}
		name, value, ok := strings.Cut(string(line[:n-2]), ":")
		if !ok || !isToken(name) || !validValue(value) {
			return errChunkTrailer
		}
		switch strings.ToLower(name) {
		case "content-length", "transfer-encoding", "host", "connection", "trailer":
			continue
		}
		c.trailer = append(c.trailer, line...)
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writeChunk writes p as one chunk.
func writeChunk(w *bufio.Writer, p []byte) error {
	var size [20]byte
	b := strconv.AppendInt(size[:0], int64(len(p)), 16)
	b = append(b, '\r', '\n')
	w.Write(b)
	w.Write(p)
	_, err := w.WriteString("\r\n")
	return err
}

// writeLastChunk ends a chunked body with the given trailer lines (each ending in
// CRLF).
func writeLastChunk(w *bufio.Writer, trailer []byte) error {
	w.WriteString("0\r\n")
	w.Write(trailer)
	_, err := w.WriteString("\r\n")
	return err
}
