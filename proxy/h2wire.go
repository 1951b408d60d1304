package proxy

// HTTP/2 on the wire, for the relay (h2relay.go): the frame codec, frame I/O
// between a reader and a writer that flushes only before it waits, and h2Out, the
// arbitration that lets other goroutines put whole frames between the relayed
// ones. Nothing here knows about streams or tracing.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
)

const (
	h2FrameHeaderLen = 9
	h2MinFrameSize   = 16384 // SETTINGS_MAX_FRAME_SIZE's initial value and floor
	h2MaxFrameSize   = 1<<24 - 1
	h2MaxStreamID    = 1<<31 - 1
	// h2MaxQueue bounds the frames waiting for the relaying goroutine to let go
	// of a writer; a client that makes more is abusive.
	h2MaxQueue = 64 << 10
)

// h2FrameHeader is the fixed 9-byte head of every frame (RFC 9113 §4.1).
type h2FrameHeader struct {
	length uint32
	typ    http2.FrameType
	flags  http2.Flags
	stream uint32
}

func parseH2FrameHeader(b []byte) h2FrameHeader {
	return h2FrameHeader{
		length: uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		typ:    http2.FrameType(b[3]),
		flags:  http2.Flags(b[4]),
		stream: binary.BigEndian.Uint32(b[5:9]) & h2MaxStreamID,
	}
}

func appendH2FrameHeader(dst []byte, length int, typ http2.FrameType, flags http2.Flags, stream uint32) []byte {
	return append(dst, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream))
}

func appendRSTStream(dst []byte, stream uint32, code http2.ErrCode) []byte {
	dst = appendH2FrameHeader(dst, 4, http2.FrameRSTStream, 0, stream)
	return binary.BigEndian.AppendUint32(dst, uint32(code))
}

func appendGoAway(dst []byte, last uint32, code http2.ErrCode, debug string) []byte {
	dst = appendH2FrameHeader(dst, 8+len(debug), http2.FrameGoAway, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, last)
	dst = binary.BigEndian.AppendUint32(dst, uint32(code))
	return append(dst, debug...)
}

func appendPing(dst []byte, data uint64) []byte {
	dst = appendH2FrameHeader(dst, 8, http2.FramePing, 0, 0)
	return binary.BigEndian.AppendUint64(dst, data)
}

func appendWindowUpdate(dst []byte, stream, incr uint32) []byte {
	dst = appendH2FrameHeader(dst, 4, http2.FrameWindowUpdate, 0, stream)
	return binary.BigEndian.AppendUint32(dst, incr)
}

// h2ConnError is a connection error (RFC 9113 §5.4.1) a peer committed.
type h2ConnError struct {
	code http2.ErrCode
	msg  string
}

func (e *h2ConnError) Error() string { return "http2: " + e.msg + " (" + e.code.String() + ")" }

func h2Error(code http2.ErrCode, msg string) error { return &h2ConnError{code: code, msg: msg} }

// h2WriteError is a failure to write to the peer a direction relays to: it is gone.
type h2WriteError struct{ err error }

func (e *h2WriteError) Error() string { return "write: " + e.err.Error() }

func (e *h2WriteError) Unwrap() error { return e.err }

// h2Out is the writing end toward one peer. One goroutine relays frames into it;
// others (a stream the relay answers itself, a GOAWAY on shutdown) add whole frames
// between the relayed ones, never inside one.
type h2Out struct {
	mu       sync.Mutex
	bw       *bufio.Writer // nil once the connection is released
	owned    bool          // the relaying goroutine is writing: others queue
	gated    bool          // the peer has not had its server preface yet: everyone else waits
	queue    []byte        // whole frames from other goroutines
	midFrame bool          // owner only: a frame is partly written
	hdr      [h2FrameHeaderLen]byte
	// The peer's last frames were posted (a GOAWAY for its connection error):
	// the owner relays nothing more. Set under mu together with the posting, so
	// whoever sees it finds them queued or written.
	last atomic.Bool
}

// own is called by the relaying goroutine before it writes. It reports false once
// the peer's last frames were posted: the owner must stop, and its release
// writes them.
func (o *h2Out) own() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owned = true
	return !o.last.Load()
}

// done reports whether the peer's last frames were posted; the owner checks it
// between frames.
func (o *h2Out) done() bool { return o.last.Load() }

// release writes what others queued, flushes, and lets others write directly
// until the next own. The relaying goroutine calls it before it blocks between
// frames.
func (o *h2Out) release() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owned = false
	if len(o.queue) > 0 && !o.gated {
		o.bw.Write(o.queue)
		o.queue = o.queue[:0]
	}
	return o.bw.Flush()
}

// send adds whole frames from a goroutine other than the owner. It reports false
// when too much is waiting already.
func (o *h2Out) send(frames []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.bw == nil || o.last.Load(): // gone, or past the last frames
	case o.owned || o.gated:
		if len(o.queue)+len(frames) > h2MaxQueue {
			return false
		}
		o.queue = append(o.queue, frames...)
	default:
		o.bw.Write(frames)
		o.bw.Flush()
	}
	return true
}

// post queues whole frames from a goroutine other than the owner without
// writing them; flushQueued, or the owner's release, writes them. last makes
// them the last frames the peer gets (done).
//
// A caller that claims a frame under a lock the relaying goroutine's end also
// takes (the relay's GOAWAY) can post it under that lock: the end then finds it
// queued and writes it before it closes the connection. Sent after the lock,
// it could arrive once the connection was half-closed, and be lost. post waits
// for o.mu, which a flush to a peer that does not read holds: the peer's write
// deadline must be set first.
func (o *h2Out) post(frames []byte, last bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bw == nil || o.last.Load() {
		return
	}
	o.queue = append(o.queue, frames...)
	if last {
		o.last.Store(true)
	}
}

// flushQueued writes what was posted when no one owns the writer; when someone
// does, its release will.
func (o *h2Out) flushQueued() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bw == nil || o.owned || o.gated || len(o.queue) == 0 {
		return
	}
	o.bw.Write(o.queue)
	o.queue = o.queue[:0]
	o.bw.Flush()
}

// writeHeader writes a frame header; the owner only.
func (o *h2Out) writeHeader(length int, typ http2.FrameType, flags http2.Flags, stream uint32) {
	appendH2FrameHeader(o.hdr[:0], length, typ, flags, stream)
	o.bw.Write(o.hdr[:])
}

// readH2FrameHeader returns the next frame header from br, still buffered there.
// Before waiting for input it lets go of o, flushing it; a failure to write is an
// *h2WriteError.
func readH2FrameHeader(br *bufio.Reader, o *h2Out) (h2FrameHeader, error) {
	if br.Buffered() < h2FrameHeaderLen {
		if err := o.release(); err != nil {
			return h2FrameHeader{}, &h2WriteError{err}
		}
		_, err := br.Peek(h2FrameHeaderLen)
		o.own()
		if err != nil {
			return h2FrameHeader{}, err
		}
	}
	b, _ := br.Peek(h2FrameHeaderLen)
	return parseH2FrameHeader(b), nil
}

// peekH2FrameHeader is readH2FrameHeader inside a header block, where o is not let
// go: nothing may come between the block's frames.
func peekH2FrameHeader(br *bufio.Reader, o *h2Out) (h2FrameHeader, error) {
	if br.Buffered() < h2FrameHeaderLen {
		o.bw.Flush()
	}
	b, err := br.Peek(h2FrameHeaderLen)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return h2FrameHeader{}, err
	}
	return parseH2FrameHeader(b), nil
}

// copyN relays the next n bytes of br to o, flushing o before waiting for more.
func copyN(br *bufio.Reader, o *h2Out, n int) error {
	o.midFrame = true
	for n > 0 {
		if br.Buffered() == 0 {
			o.bw.Flush() // an error stays in bw, for release to report
			if n >= br.Size() {
				// Large: read past the reader's buffer, one read per piece.
				buf := getCopyBuf()
				k, err := br.Read((*buf)[:min(n, len(*buf))])
				o.bw.Write((*buf)[:k])
				putCopyBuf(buf)
				n -= k
				if err != nil {
					return err
				}
				continue
			}
			if _, err := br.Peek(1); err != nil {
				return err
			}
		}
		b, _ := br.Peek(min(n, br.Buffered()))
		o.bw.Write(b)
		br.Discard(len(b))
		n -= len(b)
	}
	o.midFrame = false
	return nil
}

// readFull reads len(dst) bytes from br, flushing o first if that means waiting.
func readFull(br *bufio.Reader, o *h2Out, dst []byte) error {
	if br.Buffered() < len(dst) {
		o.bw.Flush()
	}
	_, err := io.ReadFull(br, dst)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n, max(n, 2*cap(b)))
	}
	return b[:n]
}

// headerFragment strips a HEADERS or PUSH_PROMISE payload to its header block
// fragment, returning the priority fields when present.
func headerFragment(fh h2FrameHeader, payload []byte) (frag, prio []byte, err error) {
	padded := fh.flags.Has(http2.FlagHeadersPadded) // same bit for PUSH_PROMISE
	pad := 0
	if padded {
		if len(payload) < 1 {
			return nil, nil, h2Error(http2.ErrCodeFrameSize, "padded frame too short")
		}
		pad = int(payload[0])
		payload = payload[1:]
	}
	switch {
	case fh.typ == http2.FramePushPromise:
		if len(payload) < 4 {
			return nil, nil, h2Error(http2.ErrCodeFrameSize, "PUSH_PROMISE too short")
		}
		payload = payload[4:]
	case fh.typ == http2.FrameHeaders && fh.flags.Has(http2.FlagHeadersPriority):
		if len(payload) < 5 {
			return nil, nil, h2Error(http2.ErrCodeFrameSize, "HEADERS priority too short")
		}
		prio, payload = payload[:5], payload[5:]
	}
	if pad > len(payload) {
		return nil, nil, h2Error(http2.ErrCodeProtocol, "padding longer than the payload")
	}
	return payload[:len(payload)-pad], prio, nil
}

func discardN(br *bufio.Reader, o *h2Out, n int) error {
	if br.Buffered() < n {
		o.bw.Flush()
	}
	_, err := br.Discard(n)
	return err
}

func appendSetting(dst []byte, id http2.SettingID, v uint32) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(id))
	return binary.BigEndian.AppendUint32(dst, v)
}
