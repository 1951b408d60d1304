package exporter

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Caller makes unary calls over one HTTP/2 connection, one at a time, all on
// the caller's goroutine: it writes the request, then reads frames until the
// response has ended, answering what the connection asks on the way (flow
// control, settings, pings). The exporter sends one batch at a time, so it
// needs no more; http2.Transport, which it replaced, ran a read loop and a
// writer goroutine per call, set a deadline on every write and copied each
// batch twice on the way to the socket: a third of what exporting cost the
// traced agent beside the system calls.
//
// Between calls nothing reads the connection: the next call first takes in
// what arrived meanwhile (a GOAWAY, an idle close, a ping) without waiting, and
// dials anew when the collector has gone away, so a connection the collector
// closed while idle costs no failed attempt.
type h2Caller struct {
	dial func(ctx context.Context) (net.Conn, error)
	tls  *tls.Config // nil: h2c with prior knowledge

	scheme, authority string

	c      net.Conn
	raw    net.Conn // c's TCP connection, under TLS if any: peeked between calls
	br     *bufio.Reader
	fr     *http2.Framer
	out    frameBuf // what the next write sends
	henc   *hpack.Encoder
	hbuf   frameBuf // the header block being encoded
	nextID uint32

	// The collector's settings and our send windows.
	maxFrame     uint32
	initialWin   int64
	connWin      int64
	streamWin    int64  // the open call's
	broken       bool   // a call's context ended as it returned: the deadline is unknown
	goingAway    bool   // GOAWAY seen: no new calls on this connection
	lastStreamID uint32 // the GOAWAY's: calls above it were not processed
	recvUnacked  uint32 // DATA bytes received since our last connection WINDOW_UPDATE
}

// h2Reply is a call's response: enough for readGRPCResponse.
type h2Reply struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
	ended   bool // END_STREAM seen: the response is complete
}

// frameBuf is a byte slice the Framer writes into.
type frameBuf struct{ b []byte }

func (f *frameBuf) Write(p []byte) (int, error) { f.b = append(f.b, p...); return len(p), nil }

const (
	// h2Preface is what a client sends first (RFC 9113 section 3.4).
	h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// h2RecvWindow is how much the collector may send before our
	// WINDOW_UPDATE: answers are a few bytes, the default is plenty.
	h2RecvWindow = 65535
	// h2WriteSize is about the most one write sends: the buffer frames are
	// copied into stays this small whatever the batch (a whole 512-span
	// batch at once kept a copy of it, 300 KB, in the agent).
	h2WriteSize = 64 << 10
	// h2MaxStreamID is where a connection runs out of client stream ids.
	h2MaxStreamID = 1<<31 - 1
)

// errStreamRefused says the collector did not process the call (RST_STREAM
// REFUSED_STREAM, or a GOAWAY below its stream): safe to send again.
var errStreamRefused = errors.New("the collector did not process the call")

func newH2Caller(addr string, tc *tls.Config, dial func(ctx context.Context) (net.Conn, error)) *h2Caller {
	h := &h2Caller{dial: dial, tls: tc, scheme: "http", authority: addr}
	if tc != nil {
		h.scheme = "https"
	}
	return h
}

// call sends one request with headers (lower-case names) and body and returns
// the response. An error means the call failed on the way (the connection is
// closed then); a response of any status is not an error.
func (h *h2Caller) call(ctx context.Context, path string, headers [][2]string, body ...[]byte) (*h2Reply, error) {
	fresh := false
	if h.c != nil && !h.usable() {
		h.close()
	}
	if h.c == nil {
		if err := h.connect(ctx); err != nil {
			return nil, err
		}
		fresh = true
	}
	reply, err := h.roundTrip(ctx, path, headers, body)
	if errors.Is(err, errStreamRefused) && !fresh {
		// Refused by a connection that was on its way out: once more on a
		// new one, as http2.Transport does.
		h.close()
		if err := h.connect(ctx); err != nil {
			return nil, err
		}
		reply, err = h.roundTrip(ctx, path, headers, body)
	}
	if err != nil || h.broken || h.goingAway || h.nextID > h2MaxStreamID {
		h.close()
	}
	return reply, err
}

// close drops the connection; the next call dials.
func (h *h2Caller) close() {
	if h.c != nil {
		h.c.Close()
	}
	h.c, h.raw, h.br, h.fr, h.broken = nil, nil, nil, nil, false
}

// connect dials, sends the preface and our settings and waits for the
// collector's, whose window and frame size the request must respect.
func (h *h2Caller) connect(ctx context.Context) error {
	c, err := h.dial(ctx)
	if err != nil {
		return err
	}
	h.raw = c
	if h.tls != nil {
		tc := tls.Client(c, h.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			tc.Close()
			return fmt.Errorf("the collector did not agree to HTTP/2 over TLS (ALPN %q)", p)
		}
		c = tc
	}
	h.c = c
	h.br = bufio.NewReaderSize(c, 4<<10) // answers are small
	h.fr = http2.NewFramer(&h.out, h.br)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = 1 << 20
	h.henc = hpack.NewEncoder(&h.hbuf) // a new connection, a new compression context
	h.nextID, h.maxFrame, h.initialWin, h.connWin = 1, 16384, 65535, 65535
	h.goingAway, h.lastStreamID, h.recvUnacked, h.broken = false, 0, 0, false

	stop := h.bound(ctx)
	defer stop()
	h.out.b = append(h.out.b[:0], h2Preface...)
	h.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2RecvWindow})
	if err := h.flush(); err != nil {
		h.close()
		return err
	}
	// The server's connection preface is a SETTINGS frame.
	f, err := h.fr.ReadFrame()
	if err != nil {
		h.close()
		return err
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		h.close()
		return fmt.Errorf("the collector's first frame is %v, not SETTINGS: not an HTTP/2 server", f.Header().Type)
	}
	if err := h.settings(sf); err != nil {
		h.close()
		return err
	}
	return nil
}

// bound makes ctx's deadline and cancellation the connection's: a blocked
// read or write returns when ctx is done. The returned func undoes it.
func (h *h2Caller) bound(ctx context.Context) func() {
	d, _ := ctx.Deadline()
	h.c.SetDeadline(d) // zero: none
	c := h.c
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	return func() {
		if !stop() && ctx.Err() != nil {
			h.broken = true // the past deadline may land after ours
			return
		}
		c.SetDeadline(time.Time{})
	}
}

// usable takes in, without waiting, what the collector sent since the last
// call, and reports whether the connection can carry another.
func (h *h2Caller) usable() bool {
	// Bounded: a collector that never stops sending (pings, say) gets the
	// call anyway, after this many rounds of taking in what is there.
	for range 16 {
		if h.goingAway || h.nextID > h2MaxStreamID {
			return false
		}
		if h.br.Buffered() == 0 {
			pending, alive := peekPending(h.raw)
			if !alive {
				return false // closed by the collector, or broken
			}
			if !pending {
				return true
			}
			// Frames (or, under TLS, maybe a record that holds none): they
			// are here already, so a short wait is plenty.
			h.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, err := h.br.Peek(1)
			h.c.SetReadDeadline(time.Time{})
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && h.tls != nil {
					return true // a TLS record for TLS alone (a session ticket)
				}
				return false
			}
		}
		for h.br.Buffered() > 0 {
			h.c.SetReadDeadline(time.Now().Add(time.Second))
			f, err := h.fr.ReadFrame()
			h.c.SetReadDeadline(time.Time{})
			if err != nil {
				return false
			}
			if err := h.control(f); err != nil || h.goingAway {
				return false
			}
			if err := h.flush(); err != nil {
				return false
			}
		}
	}
	return true
}

// roundTrip is one call on the open connection.
func (h *h2Caller) roundTrip(ctx context.Context, path string, headers [][2]string, body [][]byte) (*h2Reply, error) {
	stop := h.bound(ctx)
	defer stop()
	id := h.nextID
	h.nextID += 2
	size := 0
	for _, b := range body {
		size += len(b)
	}
	if err := h.writeHeaders(id, path, headers, size == 0); err != nil {
		return nil, err
	}
	reply := &h2Reply{}
	h.streamWin = h.initialWin
	for bi, off := 0, 0; bi < len(body); {
		// Frames of at most maxFrame bytes, as far as both windows go, in
		// writes of up to h2WriteSize.
		for bi < len(body) && h.connWin > 0 && h.streamWin > 0 {
			if len(h.out.b) >= h2WriteSize {
				if err := h.flush(); err != nil {
					return nil, err
				}
			}
			rest := body[bi][off:]
			n := min(int64(len(rest)), int64(h.maxFrame), h.connWin, h.streamWin)
			last := bi == len(body)-1 && int(n) == len(rest)
			h.appendData(id, rest[:n], last)
			h.connWin -= n
			h.streamWin -= n
			off += int(n)
			if off == len(body[bi]) {
				bi, off = bi+1, 0
			}
		}
		if err := h.flush(); err != nil {
			return nil, err
		}
		// Out of window: read until the collector grants more (or answers
		// early, which ends the call).
		for bi < len(body) && (h.connWin <= 0 || h.streamWin <= 0) {
			if err := h.readFrame(id, reply); err != nil {
				return nil, err
			}
			if reply.ended {
				// The answer came before the whole request: tell the
				// collector we send no more.
				h.fr.WriteRSTStream(id, http2.ErrCodeNo)
				return reply, h.flush()
			}
		}
	}
	for !reply.ended {
		if err := h.readFrame(id, reply); err != nil {
			return nil, err
		}
	}
	return reply, nil
}

// writeHeaders encodes the request's header block and queues HEADERS (and
// CONTINUATION frames, for a block larger than a frame).
func (h *h2Caller) writeHeaders(id uint32, path string, headers [][2]string, endStream bool) error {
	h.hbuf.b = h.hbuf.b[:0]
	field := func(k, v string) { h.henc.WriteField(hpack.HeaderField{Name: k, Value: v}) }
	field(":method", http.MethodPost)
	field(":scheme", h.scheme)
	field(":authority", h.authority)
	field(":path", path)
	for _, kv := range headers {
		field(kv[0], kv[1])
	}
	block := h.hbuf.b
	first := true
	for len(block) > 0 || first {
		n := min(len(block), int(h.maxFrame))
		frag, end := block[:n], n == len(block)
		block = block[n:]
		var err error
		if first {
			err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: endStream, EndHeaders: end})
			first = false
		} else {
			err = h.fr.WriteContinuation(id, end, frag)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// appendData queues one DATA frame: its 9-byte header, then data.
func (h *h2Caller) appendData(id uint32, data []byte, endStream bool) {
	var flags byte
	if endStream {
		flags = byte(http2.FlagDataEndStream)
	}
	n := len(data)
	h.out.b = append(h.out.b, byte(n>>16), byte(n>>8), byte(n), byte(http2.FrameData), flags)
	h.out.b = binary.BigEndian.AppendUint32(h.out.b, id)
	h.out.b = append(h.out.b, data...)
}

// flush writes what is queued.
func (h *h2Caller) flush() error {
	if len(h.out.b) == 0 {
		return nil
	}
	_, err := h.c.Write(h.out.b)
	h.out.b = h.out.b[:0]
	return err
}

// readFrame reads one frame, adds what is for stream id to reply and
// answers what is for the connection.
func (h *h2Caller) readFrame(id uint32, reply *h2Reply) error {
	f, err := h.fr.ReadFrame()
	if err != nil {
		var se http2.StreamError
		if errors.As(err, &se) && se.StreamID != id {
			// Another stream's trouble (there is none): not this call's.
			return nil
		}
		return err
	}
	if f.Header().StreamID != id {
		if df, ok := f.(*http2.DataFrame); ok {
			// Connection flow control counts every stream's data.
			if err := h.consumed(0, uint32(len(df.Data())), false); err != nil {
				return err
			}
		}
		if err := h.control(f); err != nil {
			return err
		}
		if h.goingAway && h.lastStreamID < id {
			return errStreamRefused
		}
		return h.flush()
	}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		if f.Truncated {
			return errors.New("the collector's response headers are too large")
		}
		if reply.header == nil {
			reply.header = make(http.Header)
			for _, hf := range f.RegularFields() {
				reply.header.Add(hf.Name, hf.Value)
			}
			st, err := strconv.Atoi(f.PseudoValue("status"))
			if err != nil {
				return fmt.Errorf("malformed :status %q", f.PseudoValue("status"))
			}
			if st >= 100 && st < 200 {
				reply.header = nil // informational: the response is still to come
				return nil
			}
			reply.status = st
		} else {
			reply.trailer = make(http.Header)
			for _, hf := range f.RegularFields() {
				reply.trailer.Add(hf.Name, hf.Value)
			}
		}
		reply.ended = f.StreamEnded()
	case *http2.DataFrame:
		if reply.header == nil {
			return errors.New("the collector sent data before a response head")
		}
		if room := maxResponseBody - len(reply.body); room > 0 {
			reply.body = append(reply.body, f.Data()[:min(room, len(f.Data()))]...)
		}
		reply.ended = f.StreamEnded()
		if err := h.consumed(id, uint32(len(f.Data())), !reply.ended); err != nil {
			return err
		}
	case *http2.RSTStreamFrame:
		if f.ErrCode == http2.ErrCodeRefusedStream {
			return errStreamRefused
		}
		if f.ErrCode == http2.ErrCodeNo && reply.ended {
			return nil
		}
		return fmt.Errorf("the collector reset the call: %v", f.ErrCode)
	case *http2.WindowUpdateFrame:
		h.streamWin += int64(f.Increment)
	default:
		// PRIORITY and the like: nothing to do.
	}
	return h.flush()
}

// control handles a frame that is for the connection, not a call.
func (h *h2Caller) control(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			return h.settings(f)
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			return h.fr.WritePing(true, f.Data)
		}
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			h.connWin += int64(f.Increment)
		}
	case *http2.GoAwayFrame:
		h.goingAway, h.lastStreamID = true, f.LastStreamID
	case *http2.PushPromiseFrame:
		return errors.New("the collector pushed although we disabled push")
	}
	return nil
}

// settings applies the collector's SETTINGS and acknowledges them.
func (h *h2Caller) settings(f *http2.SettingsFrame) error {
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxFrameSize:
			h.maxFrame = s.Val
		case http2.SettingInitialWindowSize:
			// Changes the open call's window too (RFC 9113 6.9.2).
			h.streamWin += int64(s.Val) - h.initialWin
			h.initialWin = int64(s.Val)
		case http2.SettingHeaderTableSize:
			h.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return h.fr.WriteSettingsAck()
}

// consumed returns n bytes of received flow-control credit: the
// connection's once half the window is used, stream id's (when the stream
// stays open) at once. A response is small; returning a stream's credit
// frame by frame keeps a large one (a proxy's error page) from stalling.
func (h *h2Caller) consumed(id uint32, n uint32, streamOpen bool) error {
	if n == 0 {
		return nil
	}
	h.recvUnacked += n
	if h.recvUnacked >= h2RecvWindow/2 {
		if err := h.fr.WriteWindowUpdate(0, h.recvUnacked); err != nil {
			return err
		}
		h.recvUnacked = 0
	}
	if streamOpen {
		return h.fr.WriteWindowUpdate(id, n)
	}
	return nil
}

// lowerHeaders is headers with names as HTTP/2 wants them.
func lowerHeaders(h http.Header) [][2]string {
	var out [][2]string
	for k, vv := range h {
		for _, v := range vv {
			out = append(out, [2]string{strings.ToLower(k), v})
		}
	}
	return out
}

var _ io.Writer = (*frameBuf)(nil)
