package proxy

// What the relay checks of the client's frames. Toward the client the relay is
// the HTTP/2 server (RFC 9113): a client's protocol error is answered here, with
// the connection error (GOAWAY) or stream error (RST_STREAM) the RFC names, and
// never passed on for the app to catch, since an app may check less than the
// RFC asks (h2spec through the mesh, in front of a server that checks nothing,
// is TestH2spec).
//
// The checks read frame headers and the few payload bytes that carry a
// stream id, a length or an increment, and keep the client's side of each
// stream in a map the client goroutine owns: a request's frames cost a map
// lookup and no allocation. The flow-control windows the client grants are
// followed under the relay's lock, taken once per DATA frame from the upstream
// and per WINDOW_UPDATE from the client.

import (
	"encoding/binary"
	"time"

	"golang.org/x/net/http2"
)

const (
	// h2MaxWindow is the largest flow-control window (RFC 9113 §6.9.1).
	h2MaxWindow = 1<<31 - 1
	// h2InitialWindow is SETTINGS_INITIAL_WINDOW_SIZE's initial value and the
	// connection window's (RFC 9113 §6.9.2).
	h2InitialWindow = 65535
	// h2RecentClosed is how many streams the client closed are remembered, so
	// that a HEADERS frame on one of them is told apart (STREAM_CLOSED) from one
	// on a stream id the client skipped (PROTOCOL_ERROR).
	h2RecentClosed = 64
	// h2MaxBlockFrames bounds the frames of one header block. A block the relay
	// accepts fits in about nine full frames; a client that sends CONTINUATION
	// after CONTINUATION of a few bytes each (CVE-2024-27316 and kin) costs a
	// frame's work for no header at all.
	h2MaxBlockFrames = 64
	// Rapid reset (CVE-2023-44487): a client that opens streams and resets them
	// at once makes the app start work that nobody waits for, beyond the
	// concurrent stream limit. As Envoy does, once a connection opened
	// h2ResetFloor streams, it is closed (GOAWAY ENHANCE_YOUR_CALM) when more than
	// half of its streams were reset by the client within h2PrematureReset of
	// their start, before their response ended.
	h2ResetFloor     = 500
	h2PrematureReset = time.Second
	// h2MaxUnknownSettings bounds the unknown settings one SETTINGS frame may
	// carry for them to be passed on; receivers ignore unknown settings (RFC
	// 9113 §6.5.2), so a frame with more loses them.
	h2MaxUnknownSettings = 16
	// h2SettingEnableConnectProtocol is RFC 8441's extended CONNECT setting.
	h2SettingEnableConnectProtocol http2.SettingID = 0x8
)

// h2ClientStream is the client's half of a stream forwarded upstream, while the
// client may still send on it: from its HEADERS to its END_STREAM or
// RST_STREAM (RFC 9113 §5.1: open or half-closed (local) on our side).
type h2ClientStream struct {
	declared int64 // content-length, or -1
	received int64 // DATA bytes received, padding aside
	// Once the response ended (the upstream's half is closed), the stream's
	// flow-control window is followed here rather than in its h2Stream.
	responded bool
	window    int64
}

// h2UpstreamEvent is news for the client goroutine of a stream whose client half
// may be open: the upstream reset it, or its response ended with the upstream's
// send window at window.
type h2UpstreamEvent struct {
	id     uint32
	reset  bool
	window int64
}

// h2StreamError is a stream error (RFC 9113 §5.4.2) a client committed: its legs
// fail with it.
type h2StreamError struct {
	code http2.ErrCode
	msg  string
}

func (e *h2StreamError) Error() string { return "http2: " + e.msg + " (" + e.code.String() + ")" }

// idleStream reports whether a client stream id was never opened (RFC 9113 §5.1).
// Even ids are the server's: the relay follows none of them.
func (r *h2Relay) idleStream(id uint32) bool { return id%2 == 1 && id > r.up.lastClientID }

// recordClosed remembers a stream whose client half just closed.
func (r *h2Relay) recordClosed(id uint32) {
	r.up.closedRing[r.up.closedNext%h2RecentClosed] = id
	r.up.closedNext++
}

func (r *h2Relay) recentlyClosed(id uint32) bool {
	for _, c := range r.up.closedRing {
		if c == id {
			return true
		}
	}
	return false
}

// pollUpstream takes note of what happened to open streams on the upstream's
// side: a stream the upstream reset is closed, and what the client sent on it
// before it heard is dropped; a stream whose response ended keeps its window
// here. It costs an atomic load when there is no news.
func (r *h2Relay) pollUpstream() {
	if !r.upPending.Load() {
		return
	}
	r.mu.Lock()
	evs := r.upEvents
	r.upEvents = r.upEventsSpare[:0]
	r.upPending.Store(false)
	r.mu.Unlock()
	for _, ev := range evs {
		cs, ok := r.up.open[ev.id]
		switch {
		case !ok:
		case ev.reset:
			delete(r.up.open, ev.id)
			r.markLocal(ev.id)
		default:
			cs.responded, cs.window = true, ev.window
			r.up.open[ev.id] = cs
		}
	}
	r.upEventsSpare = evs[:0]
}

// noteUpstreamLocked is pollUpstream's other end, on the upstream's goroutine,
// with r.mu held.
func (r *h2Relay) noteUpstreamLocked(ev h2UpstreamEvent) {
	if len(r.upEvents) >= 4*h2MaxStreams {
		// A client that sends nothing while the upstream resets stream
		// after stream: what it is not told costs at most a RST_STREAM
		// (STREAM_CLOSED) for a frame it should not have sent.
		return
	}
	r.upEvents = append(r.upEvents, ev)
	r.upPending.Store(true)
}

// responseEndedLocked hands the window of a stream whose response ended to the
// client goroutine, if the client may still send on it (and so still send
// WINDOW_UPDATE). r.mu is held.
func (r *h2Relay) responseEndedLocked(st *h2Stream) {
	if st.l.sent.IsZero() {
		r.noteUpstreamLocked(h2UpstreamEvent{id: st.id, window: st.window})
	}
}

// clientStreamError ends a stream the client broke (RFC 9113 §5.4.2): the client
// gets RST_STREAM with code, the upstream, if it has the stream, RST_STREAM
// CANCEL, and whatever the client still sends on it is dropped.
func (r *h2Relay) clientStreamError(id uint32, code http2.ErrCode, msg string) error {
	r.fl.breaches.Add(1)
	_, open := r.up.open[id]
	delete(r.up.open, id)
	now := time.Now()
	st := r.take(id, now)
	if st != nil || open {
		r.up.cframes = appendRSTStream(r.up.cframes[:0], id, http2.ErrCodeCancel)
		r.uw.bw.Write(r.up.cframes)
	}
	if st != nil {
		st.l.fail("client", &h2StreamError{code: code, msg: msg})
		r.finish(st, now)
	}
	if open {
		r.markLocal(id)
	} else {
		r.recordClosed(id)
	}
	r.up.cframes = appendRSTStream(r.up.cframes[:0], id, code)
	return r.sendClient(r.up.cframes)
}

// discardFrame drops the frame fh heads, giving the client back the connection
// window its payload took when it was DATA: the upstream never sees it, so never
// returns it.
func (r *h2Relay) discardFrame(fh h2FrameHeader) error {
	br := r.cr
	br.Discard(h2FrameHeaderLen)
	if err := discardN(br, &r.uw, int(fh.length)); err != nil {
		return err
	}
	if fh.typ == http2.FrameData && fh.length > 0 {
		r.up.cframes = appendWindowUpdate(r.up.cframes[:0], 0, fh.length)
		return r.sendClient(r.up.cframes)
	}
	return nil
}

// peekPayload returns the first n bytes of the payload of the frame at the head
// of the client's reader.
func (r *h2Relay) peekPayload(n int) ([]byte, error) {
	if r.cr.Buffered() < h2FrameHeaderLen+n {
		r.uw.bw.Flush() // about to wait: what is written goes out first
	}
	b, err := r.cr.Peek(h2FrameHeaderLen + n)
	if err != nil {
		return nil, err
	}
	return b[h2FrameHeaderLen:], nil
}

// checkData checks a DATA frame (RFC 9113 §6.1) and returns the length of its
// data, padding aside.
func (r *h2Relay) checkData(fh h2FrameHeader) (int64, error) {
	if fh.stream == 0 {
		return 0, h2Error(http2.ErrCodeProtocol, "DATA on stream 0")
	}
	if r.idleStream(fh.stream) {
		return 0, h2Error(http2.ErrCodeProtocol, "DATA on an idle stream") // §5.1
	}
	n := int64(fh.length)
	if fh.flags.Has(http2.FlagDataPadded) {
		if fh.length == 0 {
			return 0, h2Error(http2.ErrCodeFrameSize, "padded DATA without a pad length")
		}
		b, err := r.peekPayload(1)
		if err != nil {
			return 0, err
		}
		// The pad length field and the padding fit in the payload.
		pad := int64(b[0]) + 1
		if pad > n {
			return 0, h2Error(http2.ErrCodeProtocol, "DATA padding longer than the payload")
		}
		n -= pad
	}
	return n, nil
}

// checkPing checks a PING frame (RFC 9113 §6.7).
func checkPing(fh h2FrameHeader) error {
	switch {
	case fh.length != 8:
		return h2Error(http2.ErrCodeFrameSize, "PING length")
	case fh.stream != 0:
		return h2Error(http2.ErrCodeProtocol, "PING on a stream")
	}
	return nil
}

// checkGoAway checks a GOAWAY frame (RFC 9113 §6.8).
func checkGoAway(fh h2FrameHeader) error {
	switch {
	case fh.stream != 0:
		return h2Error(http2.ErrCodeProtocol, "GOAWAY on a stream")
	case fh.length < 8:
		return h2Error(http2.ErrCodeFrameSize, "GOAWAY length")
	}
	return nil
}

// clientPriority checks a PRIORITY frame (RFC 9113 §6.3, §5.3.1) and relays it
// for a stream the upstream knows.
func (r *h2Relay) clientPriority(fh h2FrameHeader) error {
	id := fh.stream
	if id == 0 {
		return h2Error(http2.ErrCodeProtocol, "PRIORITY on stream 0")
	}
	if fh.length != 5 {
		if err := r.discardFrame(fh); err != nil {
			return err
		}
		return r.clientStreamError(id, http2.ErrCodeFrameSize, "PRIORITY length")
	}
	b, err := r.peekPayload(4)
	if err != nil {
		return err
	}
	if binary.BigEndian.Uint32(b)&h2MaxStreamID == id {
		if err := r.discardFrame(fh); err != nil {
			return err
		}
		return r.clientStreamError(id, http2.ErrCodeProtocol, "stream depends on itself")
	}
	if r.dropped(id) {
		return r.discardFrame(fh)
	}
	return copyN(r.cr, &r.uw, h2FrameHeaderLen+int(fh.length))
}

// clientWindowUpdate checks a WINDOW_UPDATE frame (RFC 9113 §6.9) and relays
// it. The relay follows the windows the client grants the upstream, less the
// DATA the upstream sent (h2Relay.connWindow, h2Stream.window), to catch an
// increment beyond 2^31-1 (§6.9.1).
func (r *h2Relay) clientWindowUpdate(fh h2FrameHeader) error {
	if fh.length != 4 {
		return h2Error(http2.ErrCodeFrameSize, "WINDOW_UPDATE length")
	}
	id := fh.stream
	b, err := r.peekPayload(4)
	if err != nil {
		return err
	}
	incr := int64(binary.BigEndian.Uint32(b) & h2MaxWindow)
	if id == 0 {
		if incr == 0 {
			return h2Error(http2.ErrCodeProtocol, "WINDOW_UPDATE with no increment")
		}
		r.mu.Lock()
		r.connWindow += incr
		over := r.connWindow > h2MaxWindow
		r.mu.Unlock()
		if over {
			return h2Error(http2.ErrCodeFlowControl, "connection window above 2^31-1")
		}
		return copyN(r.cr, &r.uw, h2FrameHeaderLen+4)
	}
	if r.idleStream(id) {
		return h2Error(http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream") // §5.1
	}
	if incr == 0 {
		if err := r.discardFrame(fh); err != nil {
			return err
		}
		return r.clientStreamError(id, http2.ErrCodeProtocol, "WINDOW_UPDATE with no increment")
	}
	if r.dropped(id) {
		return r.discardFrame(fh)
	}
	r.mu.Lock()
	over := false
	st := r.streams[id]
	if st != nil {
		st.window += incr
		over = st.window > h2MaxWindow
	}
	r.mu.Unlock()
	if st == nil {
		// The response ended: its end was noted before the stream left the
		// table, so the window is here now if the client's half is open.
		r.pollUpstream()
		if cs, ok := r.up.open[id]; ok && cs.responded {
			cs.window += incr
			over = cs.window > h2MaxWindow
			r.up.open[id] = cs
		}
	}
	if over {
		if err := r.discardFrame(fh); err != nil {
			return err
		}
		return r.clientStreamError(id, http2.ErrCodeFlowControl, "stream window above 2^31-1")
	}
	return copyN(r.cr, &r.uw, h2FrameHeaderLen+4)
}

// checkSettings checks the client's settings (RFC 9113 §6.5.2) and rewrites the
// payload so that each setting appears once, with its last value: settings are
// processed in order (§6.5.3), so that is what they mean, and some servers (Go's)
// take a repeated setting for an error. It returns the new payload and the
// client's SETTINGS_INITIAL_WINDOW_SIZE, or -1 when it did not change.
func checkSettings(payload []byte) ([]byte, int64, error) {
	var last [16]int // 1 + index of the last occurrence of each known id
	initial := int64(-1)
	unknown := 0
	for i := 0; i < len(payload); i += 6 {
		id := http2.SettingID(binary.BigEndian.Uint16(payload[i:]))
		v := binary.BigEndian.Uint32(payload[i+2:])
		switch id {
		case http2.SettingEnablePush, h2SettingEnableConnectProtocol:
			if v > 1 {
				return nil, 0, h2Error(http2.ErrCodeProtocol, "SETTINGS "+id.String()+" neither 0 nor 1")
			}
		case http2.SettingInitialWindowSize:
			if v > h2MaxWindow {
				return nil, 0, h2Error(http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
			}
			initial = int64(v)
		case http2.SettingMaxFrameSize:
			if v < h2MinFrameSize || v > h2MaxFrameSize {
				return nil, 0, h2Error(http2.ErrCodeProtocol, "SETTINGS_MAX_FRAME_SIZE out of range")
			}
		}
		if int(id) < len(last) {
			last[id] = i/6 + 1
		} else {
			unknown++
		}
	}
	// Compact in place, keeping each id's last occurrence. Unknown ids are
	// kept (an upstream may know them) unless there are so many that finding
	// their repeats would cost more than they can be worth.
	out := 0
	for i := 0; i < len(payload); i += 6 {
		id := binary.BigEndian.Uint16(payload[i:])
		if int(id) < len(last) {
			if last[id] != i/6+1 {
				continue
			}
		} else {
			if unknown > h2MaxUnknownSettings {
				continue
			}
			later := false
			for j := i + 6; j < len(payload) && !later; j += 6 {
				later = binary.BigEndian.Uint16(payload[j:]) == id
			}
			if later {
				continue
			}
		}
		copy(payload[out:out+6], payload[i:i+6])
		out += 6
	}
	return payload[:out], initial, nil
}

// applyInitialWindow moves every stream's window by the change of the client's
// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.9.2).
func (r *h2Relay) applyInitialWindow(v int64) error {
	delta := v - r.up.initialWindow
	r.up.initialWindow = v
	if delta == 0 {
		return nil
	}
	over := false
	for id, cs := range r.up.open {
		if cs.responded {
			cs.window += delta
			over = over || cs.window > h2MaxWindow
			r.up.open[id] = cs
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.streams {
		st.window += delta
		over = over || st.window > h2MaxWindow
	}
	for i := range r.upEvents { // ended, not yet polled
		if ev := &r.upEvents[i]; !ev.reset {
			ev.window += delta
			over = over || ev.window > h2MaxWindow
		}
	}
	if over {
		return h2Error(http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE takes a stream window above 2^31-1")
	}
	return nil
}

// countReset notes a stream the client reset, and reports a connection error
// when the connection looks like a rapid reset attack (see h2ResetFloor).
func (r *h2Relay) countReset(id uint32, now time.Time) error {
	r.mu.Lock()
	st := r.streams[id]
	premature := st != nil && now.Sub(st.l.srvStart) < h2PrematureReset
	r.mu.Unlock()
	if !premature {
		return nil
	}
	r.up.prematureResets++
	if r.up.opened >= h2ResetFloor && 2*r.up.prematureResets > r.up.opened {
		return h2Error(http2.ErrCodeEnhanceYourCalm, "too many streams reset by the client")
	}
	return nil
}
