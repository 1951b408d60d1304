package proxy

import (
	"bufio"
	"io"
	"time"
)

// bodyReader is a body decoder that can tell whether its next Read would wait on
// the network.
type bodyReader interface {
	io.Reader
	// ready reports that Read can return data, the end or an error without
	// waiting for more bytes to arrive.
	ready() bool
}

// lengthReader reads a Content-Length body: exactly n bytes. Unlike
// io.LimitedReader, running out early is an error, not the end of the body.
type lengthReader struct {
	br *bufio.Reader
	n  int64
}

func (l *lengthReader) ready() bool { return l.n <= 0 || l.br.Buffered() > 0 }

func (l *lengthReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.br.Read(p)
	l.n -= int64(n)
	if err == io.EOF {
		if l.n > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}

// untilCloseReader reads a response body delimited by the end of the connection.
type untilCloseReader struct{ br *bufio.Reader }

func (u untilCloseReader) Read(p []byte) (int, error) { return u.br.Read(p) }
func (u untilCloseReader) ready() bool                { return u.br.Buffered() > 0 }

// bodyCopy streams one body. Nothing is buffered beyond one chunk, whatever the
// body's size.
type bodyCopy struct {
	dst     *bufio.Writer
	src     bodyReader
	chunked bool // frame the output as chunks
	n       int64
}

// copy moves the body. One whose bytes have all arrived (most small bodies come
// in the same segment as their head) goes out straight from the reader's buffer;
// only a body still on its way takes a copy buffer. A node with thousands of
// requests in flight would otherwise hold a 32 KiB buffer for each.
func (b *bodyCopy) copy() (readErr, writeErr error) {
	if l, ok := b.src.(*lengthReader); ok && !b.chunked && l.n <= int64(l.br.Buffered()) {
		p, _ := l.br.Peek(int(l.n))
		_, writeErr = b.dst.Write(p)
		l.br.Discard(len(p))
		l.n -= int64(len(p))
		b.n += int64(len(p))
		return nil, writeErr
	}
	buf := getCopyBuf()
	defer putCopyBuf(buf)
	return b.run(*buf)
}

// run copies until src ends and reports which side failed. The writer is flushed
// (the head before it too) whenever the source is about to wait: a streamed body (server-sent events,
// gRPC-Web, a slow upload) moves as it arrives, while a body that arrived in one
// piece leaves in one write.
func (b *bodyCopy) run(buf []byte) (readErr, writeErr error) {
	for {
		if b.dst.Buffered() > 0 && !b.src.ready() {
			if err := b.dst.Flush(); err != nil {
				return nil, err
			}
		}
		n, err := b.src.Read(buf)
		if n > 0 {
			b.n += int64(n)
			var werr error
			if b.chunked {
				werr = writeChunk(b.dst, buf[:n])
			} else {
				_, werr = b.dst.Write(buf[:n])
			}
			if werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// bodyPump streams a request body upstream in its own goroutine while the
// connection's goroutine waits for the response, so a server that answers early,
// or answers while it reads (full-duplex streaming), cannot deadlock against a
// proxy still busy sending.
type bodyPump struct {
	copy   bodyCopy
	chunks *chunkedReader // the source when the body came chunked: its trailer goes out last
	up     *upstream
	done   chan struct{}

	// Set before done closes.
	readErr  error // reading the client: its fault, or it went away
	writeErr error // writing the upstream
	sentAt   time.Time
}

func (bp *bodyPump) start() {
	bp.done = make(chan struct{})
	go bp.run()
}

func (bp *bodyPump) run() {
	bp.readErr, bp.writeErr = bp.copy.copy()
	if bp.readErr == nil && bp.writeErr == nil {
		if bp.copy.chunked {
			var trailer []byte
			if bp.chunks != nil {
				trailer = bp.chunks.trailer
			}
			bp.writeErr = writeLastChunk(bp.copy.dst, trailer)
		}
		if bp.writeErr == nil {
			bp.writeErr = bp.copy.dst.Flush()
		}
	}
	bp.sentAt = time.Now()
	failed := bp.readErr != nil || bp.writeErr != nil
	close(bp.done)
	if failed {
		// The upstream holds half a request: it can never be reused, and closing
		// it ends the wait for a response that will not come. Closing after done
		// lets the waiting side see why before its read fails.
		bp.up.conn.Close()
	}
}

func (bp *bodyPump) ok() bool { return bp.readErr == nil && bp.writeErr == nil }
