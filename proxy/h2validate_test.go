package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hoptrace/hoptrace/spans"
)

// relayToLenient is one relay in front of a lenient app (one that checks
// nothing), and what that app read.
func relayToLenient(t *testing.T, settings ...http2.Setting) (addr string, log *frameLog) {
	t.Helper()
	log = &frameLog{}
	_, ln := oneProxy(t, lenientH2App(t, log, settings...), &recorder{})
	return ln.Addr().String(), log
}

// post opens stream id with a request that has a body to come.
func (p *h2Peer) post(id uint32, more ...string) {
	p.t.Helper()
	p.headers(id, false, append([]string{":method", "POST", ":scheme", "http", ":authority", "svc-b.test", ":path", "/"}, more...)...)
}

// answer reads up to the relay's answer to something wrong on stream: a
// RST_STREAM on it, or a GOAWAY. The app's responses on the way are skipped.
func (p *h2Peer) answer(stream uint32) http2.Frame {
	p.t.Helper()
	for {
		f, err := p.next()
		if err != nil {
			p.t.Fatalf("no RST_STREAM or GOAWAY: %v", err)
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return &http2.GoAwayFrame{LastStreamID: f.LastStreamID, ErrCode: f.ErrCode}
		case *http2.RSTStreamFrame:
			if f.StreamID == stream {
				return &http2.RSTStreamFrame{FrameHeader: f.FrameHeader, ErrCode: f.ErrCode}
			}
		}
	}
}

// Each RFC 9113 rule the relay enforces for the client, with the answer the RFC
// names: a connection error (GOAWAY) or a stream error (RST_STREAM). The app
// behind the relay checks nothing, so every answer is the relay's; after a
// stream error the connection goes on.
func TestH2RelayValidatesClient(t *testing.T) {
	const conn, stream = true, false
	big := http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20}
	for _, tc := range []struct {
		name     string
		settings []http2.Setting // the app's
		send     func(p *h2Peer)
		connErr  bool
		id       uint32 // the stream a stream error is on
		code     http2.ErrCode
		upstream func(t *testing.T, frames []string) // what the app must (not) have read
	}{
		// §5.1: frames on idle streams.
		{name: "DATA on an idle stream", send: func(p *h2Peer) { p.fr.WriteData(1, true, []byte("x")) }, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "RST_STREAM on an idle stream", send: func(p *h2Peer) { p.fr.WriteRSTStream(1, http2.ErrCodeCancel) }, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "WINDOW_UPDATE on an idle stream", send: func(p *h2Peer) { p.fr.WriteWindowUpdate(1, 1) }, connErr: conn, code: http2.ErrCodeProtocol},
		// §5.1: frames after the client's half closed.
		{name: "DATA after END_STREAM", send: func(p *h2Peer) {
			p.get(1, "/")
			p.fr.WriteData(1, true, []byte("late"))
		}, id: 1, code: http2.ErrCodeStreamClosed, upstream: noEndingData(1)},
		{name: "DATA after RST_STREAM", send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			p.fr.WriteData(1, true, []byte("late"))
		}, id: 1, code: http2.ErrCodeStreamClosed, upstream: noEndingData(1)},
		{name: "HEADERS after END_STREAM", send: func(p *h2Peer) {
			p.get(1, "/")
			p.response(1)
			p.get(1, "/")
		}, connErr: conn, code: http2.ErrCodeStreamClosed},
		{name: "HEADERS after RST_STREAM", send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteRSTStream(1, http2.ErrCodeCancel)
			p.get(1, "/")
		}, connErr: conn, code: http2.ErrCodeStreamClosed},
		// §5.1.1: stream ids only go up.
		{name: "stream id below the last", send: func(p *h2Peer) {
			p.get(5, "/")
			p.get(3, "/")
		}, connErr: conn, code: http2.ErrCodeProtocol},
		// §5.3.1: no stream depends on itself.
		{name: "HEADERS depending on itself", send: func(p *h2Peer) {
			p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: p.block(":method", "GET", ":scheme", "http", ":path", "/"),
				EndStream: true, EndHeaders: true, Priority: http2.PriorityParam{StreamDep: 1, Weight: 15}})
		}, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: "PRIORITY depending on itself", send: func(p *h2Peer) {
			p.fr.WritePriority(1, http2.PriorityParam{StreamDep: 1, Weight: 15})
		}, id: 1, code: http2.ErrCodeProtocol},
		// §6.1, §6.3, §6.7, §6.8, §6.9: malformed frames.
		{name: "DATA on stream 0", send: func(p *h2Peer) { p.fr.WriteData(0, true, []byte("x")) }, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "DATA padding beyond the payload", send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteRawFrame(http2.FrameData, http2.FlagDataPadded|http2.FlagDataEndStream, 1, []byte{6, 'T', 'e', 's', 't'})
		}, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "PRIORITY on stream 0", send: func(p *h2Peer) { p.fr.WritePriority(0, http2.PriorityParam{StreamDep: 1}) }, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "PRIORITY of 4 bytes", send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteRawFrame(http2.FramePriority, 0, 1, []byte{0x80, 0, 0, 1})
		}, id: 1, code: http2.ErrCodeFrameSize, upstream: upstreamReset(1)},
		{name: "PING on a stream", send: func(p *h2Peer) { p.fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8)) }, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "PING of 6 bytes", send: func(p *h2Peer) { p.fr.WriteRawFrame(http2.FramePing, 0, 0, make([]byte, 6)) }, connErr: conn, code: http2.ErrCodeFrameSize},
		{name: "GOAWAY on a stream", send: func(p *h2Peer) { p.fr.WriteRawFrame(http2.FrameGoAway, 0, 1, make([]byte, 8)) }, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "WINDOW_UPDATE of 3 bytes", send: func(p *h2Peer) { p.fr.WriteRawFrame(http2.FrameWindowUpdate, 0, 0, []byte{0, 0, 1}) }, connErr: conn, code: http2.ErrCodeFrameSize},
		{name: "WINDOW_UPDATE of 0 on the connection", send: func(p *h2Peer) { p.fr.WriteWindowUpdate(0, 0) }, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "WINDOW_UPDATE of 0 on a stream", send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteWindowUpdate(1, 0)
		}, id: 1, code: http2.ErrCodeProtocol, upstream: upstreamReset(1)},
		// §6.9.1: no window above 2^31-1.
		{name: "connection window overflow", send: func(p *h2Peer) {
			p.fr.WriteWindowUpdate(0, 1<<31-1)
		}, connErr: conn, code: http2.ErrCodeFlowControl},
		{name: "stream window overflow", send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteWindowUpdate(1, 1<<31-1)
		}, id: 1, code: http2.ErrCodeFlowControl, upstream: upstreamReset(1)},
		{name: "stream window overflow after the response", send: func(p *h2Peer) {
			p.post(1)
			p.response(1) // the app answers at once: the client's half stays open
			p.fr.WriteWindowUpdate(1, 1<<31-1-50)
		}, id: 1, code: http2.ErrCodeFlowControl, upstream: upstreamReset(1)},
		// §6.9.2, §6.5.2: settings out of range.
		{name: "INITIAL_WINDOW_SIZE above 2^31-1", send: func(p *h2Peer) {
			p.fr.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 4, 0x80, 0, 0, 0})
		}, connErr: conn, code: http2.ErrCodeFlowControl},
		{name: "INITIAL_WINDOW_SIZE taking a window above 2^31-1", send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteWindowUpdate(1, 1<<30)
			p.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
		}, connErr: conn, code: http2.ErrCodeFlowControl},
		{name: "ENABLE_PUSH of 2", send: func(p *h2Peer) {
			p.fr.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 2, 0, 0, 0, 2})
		}, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "MAX_FRAME_SIZE below 16384", send: func(p *h2Peer) {
			p.fr.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 5, 0, 0, 0x3f, 0xff})
		}, connErr: conn, code: http2.ErrCodeProtocol},
		{name: "MAX_FRAME_SIZE above 2^24-1", send: func(p *h2Peer) {
			p.fr.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 5, 1, 0, 0, 0})
		}, connErr: conn, code: http2.ErrCodeProtocol},
		// §4.2: the client is held to the frame size the relay announced
		// (16384), whatever the app allows.
		{name: "DATA larger than 16384", settings: []http2.Setting{big}, send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteData(1, true, make([]byte, h2MinFrameSize+1))
		}, connErr: conn, code: http2.ErrCodeFrameSize, upstream: noEndingData(1)},
		// §8.1: trailers end the stream.
		{name: "trailers without END_STREAM", send: func(p *h2Peer) {
			p.post(1)
			p.fr.WriteData(1, false, []byte("body"))
			p.headers(1, false, "x-trailer", "1")
		}, id: 1, code: http2.ErrCodeProtocol, upstream: upstreamReset(1)},
		// §8.2.2: connection-specific fields, and TE other than trailers.
		{name: "connection field", send: func(p *h2Peer) { p.get(1, "/", "connection", "keep-alive") }, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: "transfer-encoding field", send: func(p *h2Peer) { p.get(1, "/", "transfer-encoding", "chunked") }, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: "upgrade field", send: func(p *h2Peer) { p.get(1, "/", "upgrade", "websocket") }, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: "TE other than trailers", send: func(p *h2Peer) { p.get(1, "/", "te", "trailers, deflate") }, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		// §8.3.1: request pseudo-headers.
		{name: "empty :path", send: func(p *h2Peer) {
			p.headers(1, true, ":method", "GET", ":scheme", "http", ":path", "")
		}, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: "no :path", send: func(p *h2Peer) {
			p.headers(1, true, ":method", "GET", ":scheme", "http", ":authority", "svc-b.test")
		}, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: "no :scheme", send: func(p *h2Peer) {
			p.headers(1, true, ":method", "GET", ":path", "/", ":authority", "svc-b.test")
		}, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: "CONNECT with a :path", send: func(p *h2Peer) {
			p.headers(1, false, ":method", "CONNECT", ":authority", "svc-b.test:443", ":path", "/")
		}, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: ":protocol without CONNECT", send: func(p *h2Peer) {
			p.headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/", ":protocol", "websocket")
		}, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: ":status in a request", send: func(p *h2Peer) { p.get(1, "/", ":status", "200") }, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		// §8.1.1: content-length against the DATA.
		{name: "DATA beyond content-length", send: func(p *h2Peer) {
			p.post(1, "content-length", "4")
			p.fr.WriteData(1, true, []byte("12345"))
		}, id: 1, code: http2.ErrCodeProtocol, upstream: func(t *testing.T, frames []string) {
			noEndingData(1)(t, frames)
			upstreamReset(1)(t, frames)
		}},
		{name: "DATA short of content-length", send: func(p *h2Peer) {
			p.post(1, "content-length", "8")
			p.fr.WriteData(1, false, []byte("1234"))
			p.fr.WriteData(1, true, []byte("567"))
		}, id: 1, code: http2.ErrCodeProtocol, upstream: func(t *testing.T, frames []string) {
			noEndingData(1)(t, frames)
			upstreamReset(1)(t, frames)
		}},
		{name: "content-length without DATA", send: func(p *h2Peer) {
			p.headers(1, true, ":method", "POST", ":scheme", "http", ":path", "/", "content-length", "3")
		}, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
		{name: "content-length short at the trailers", send: func(p *h2Peer) {
			p.post(1, "content-length", "8")
			p.fr.WriteData(1, false, []byte("1234"))
			p.headers(1, true, "x-trailer", "1")
		}, id: 1, code: http2.ErrCodeProtocol, upstream: upstreamReset(1)},
		{name: "content-length not a number", send: func(p *h2Peer) { p.post(1, "content-length", "-1") }, id: 1, code: http2.ErrCodeProtocol, upstream: noFrames(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, log := relayToLenient(t, tc.settings...)
			p := dialH2(t, addr)
			tc.send(p)
			f := p.answer(tc.id)
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				if !tc.connErr || f.ErrCode != tc.code {
					t.Fatalf("GOAWAY %v, want %s", f.ErrCode, want(tc.connErr, tc.id, tc.code))
				}
				if _, err := p.fr.ReadFrame(); err == nil {
					for err == nil {
						_, err = p.fr.ReadFrame()
					}
				}
			case *http2.RSTStreamFrame:
				if tc.connErr || f.ErrCode != tc.code {
					t.Fatalf("RST_STREAM %v on %d, want %s", f.ErrCode, f.StreamID, want(tc.connErr, tc.id, tc.code))
				}
				// A stream error leaves the connection as it was.
				p.get(101, "/after")
				if st, body, _ := p.response(101); st != "200" || len(body) == 0 {
					t.Errorf("next request: %q %q", st, body)
				}
			}
			if tc.upstream != nil {
				// The relay wrote what it forwarded before it answered;
				// give the app a moment to read it.
				time.Sleep(20 * time.Millisecond)
				tc.upstream(t, log.lines())
			}
		})
	}
}

func want(conn bool, id uint32, code http2.ErrCode) string {
	if conn {
		return "GOAWAY " + code.String()
	}
	return "RST_STREAM " + code.String() + " on " + itoa64(int64(id))
}

// noFrames: the app never heard of the stream.
func noFrames(id uint32) func(*testing.T, []string) {
	return func(t *testing.T, frames []string) {
		t.Helper()
		for _, f := range frames {
			if fields := strings.Fields(f); len(fields) > 1 && fields[1] == itoa64(int64(id)) {
				t.Errorf("the app read %q; want nothing on stream %d: %q", f, id, frames)
			}
		}
	}
}

// noEndingData: no DATA ending the stream reached the app, so that it never
// took the request for a whole one.
func noEndingData(id uint32) func(*testing.T, []string) {
	return func(t *testing.T, frames []string) {
		t.Helper()
		prefix := "DATA " + itoa64(int64(id)) + " "
		for _, f := range frames {
			if strings.HasPrefix(f, prefix) && strings.HasSuffix(f, " END") {
				t.Errorf("the app read %q: %q", f, frames)
			}
		}
	}
}

// upstreamReset: the app heard the stream was cancelled.
func upstreamReset(id uint32) func(*testing.T, []string) {
	return func(t *testing.T, frames []string) {
		t.Helper()
		if !slices.Contains(frames, "RST_STREAM "+itoa64(int64(id))+" CANCEL") {
			t.Errorf("the app read %q; want RST_STREAM CANCEL on %d", frames, id)
		}
	}
}

// What the relay must let through: well-formed requests the rules above must
// not catch.
func TestH2RelayValidAccepted(t *testing.T) {
	addr, log := relayToLenient(t)
	p := dialH2(t, addr)
	// TE: trailers, a body matching its content-length, trailers, a CONNECT
	// with only an authority, and frames on a stream the client already ended.
	p.get(1, "/", "te", "trailers")
	p.post(3, "content-length", "8")
	p.fr.WriteData(3, false, []byte("1234"))
	p.fr.WriteData(3, true, []byte("5678"))
	p.post(5)
	p.fr.WriteData(5, false, []byte("body"))
	p.headers(5, true, "x-trailer", "1")
	p.fr.WriteWindowUpdate(5, 100)
	p.fr.WritePriority(5, http2.PriorityParam{StreamDep: 3, Weight: 1})
	p.fr.WriteRSTStream(5, http2.ErrCodeCancel)
	p.headers(7, false, ":method", "CONNECT", ":authority", "svc-b.test:443")
	p.fr.WriteRawFrame(http2.FramePriority, 0, 9, []byte{0, 0, 0, 1, 10}) // an idle stream
	for _, id := range []uint32{1, 3, 5, 7} {
		if st, _, end := p.response(id); st != "200" {
			t.Errorf("stream %d: status %q, %v", id, st, end)
		}
	}
	time.Sleep(20 * time.Millisecond)
	frames := log.lines()
	for _, f := range []string{"DATA 3 len=4 END", "HEADERS 5 END", "HEADERS 7"} {
		if !slices.Contains(frames, f) {
			t.Errorf("the app did not read %q: %q", f, frames)
		}
	}
}

// Settings repeated in one frame reach the app once, with their last value
// (RFC 9113 §6.5.3; Go's server rejects repeats), and the app's larger frame
// size is not passed on: the client is held to 16384.
func TestH2RelaySettingsOnce(t *testing.T) {
	addr, log := relayToLenient(t, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
	p := dialH2(t, addr)
	p.fr.WriteSettings(
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1},
		http2.Setting{ID: 0x99, Val: 7}, // unknown: passed on
		http2.Setting{ID: 0x99, Val: 8},
	)
	p.get(1, "/")
	p.response(1)
	want := "SETTINGS [ENABLE_PUSH = 0] [INITIAL_WINDOW_SIZE = 1] [UNKNOWN_SETTING_153 = 8]"
	if frames := log.lines(); !slices.Contains(frames, want) {
		t.Errorf("the app read %q, want %q", frames, want)
	}

	// The relay's own SETTINGS, as a new client reads them.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw := newH2Peer(t, c)
	io.WriteString(c, h2Preface)
	raw.fr.WriteSettings()
	f, err := raw.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v", f)
	}
	if v, ok := sf.Value(http2.SettingMaxFrameSize); ok && v != h2MinFrameSize {
		t.Errorf("the client may send frames of %d bytes, want %d", v, h2MinFrameSize)
	}
}

// A header block in many small CONTINUATION frames (CVE-2024-27316 and kin) ends
// the connection before it costs more than a few frames' work.
func TestH2RelayContinuationFlood(t *testing.T) {
	addr, log := relayToLenient(t)
	p := dialH2(t, addr)
	block := p.block(":method", "GET", ":scheme", "http", ":path", "/")
	p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1]})
	for i := 0; i < 10_000; i++ {
		if err := p.fr.WriteContinuation(1, false, nil); err != nil {
			break // the relay hung up
		}
	}
	if ga := p.goAway(); ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
	}
	noFrames(1)(t, log.lines())
}

// Rapid reset (CVE-2023-44487): a client that opens streams and resets them at
// once is cut off; one that resets some of its streams is not.
func TestH2RelayRapidReset(t *testing.T) {
	addr, _ := relayToLenient(t)
	t.Run("attack", func(t *testing.T) {
		p := dialH2(t, addr)
		var err error
		for id := uint32(1); id < 4*h2ResetFloor && err == nil; id += 2 {
			p.post(id)
			err = p.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if ga := p.goAway(); ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
		}
	})
	t.Run("a third of the streams cancelled", func(t *testing.T) {
		p := dialH2(t, addr)
		for id := uint32(1); id < 2*h2ResetFloor; id += 2 {
			if id%3 == 0 {
				p.post(id)
				p.fr.WriteRSTStream(id, http2.ErrCodeCancel)
				continue
			}
			p.get(id, "/")
			if st, _, end := p.response(id); st != "200" {
				t.Fatalf("stream %d: %q %v", id, st, end)
			}
		}
	})
}

func TestCheckSettings(t *testing.T) {
	settings := func(ss ...http2.Setting) []byte {
		var b []byte
		for _, s := range ss {
			b = appendSetting(b, s.ID, s.Val)
		}
		return b
	}
	s := func(id http2.SettingID, v uint32) http2.Setting { return http2.Setting{ID: id, Val: v} }
	var manyUnknown []http2.Setting
	for i := range h2MaxUnknownSettings + 1 {
		manyUnknown = append(manyUnknown, s(http2.SettingID(0x100+i), 1))
	}
	for _, tc := range []struct {
		name    string
		in      []http2.Setting
		out     []http2.Setting
		initial int64
		code    http2.ErrCode // a connection error, when out is nil
	}{
		{"empty", nil, nil, -1, 0},
		{"repeats keep the last", []http2.Setting{s(4, 100), s(2, 0), s(4, 1), s(0x99, 7), s(0x99, 8)},
			[]http2.Setting{s(2, 0), s(4, 1), s(0x99, 8)}, 1, 0},
		{"too many unknown ids are dropped", append([]http2.Setting{s(3, 10)}, manyUnknown...), []http2.Setting{s(3, 10)}, -1, 0},
		{"ENABLE_PUSH 2", []http2.Setting{s(2, 2)}, nil, 0, http2.ErrCodeProtocol},
		{"ENABLE_CONNECT_PROTOCOL 2", []http2.Setting{s(8, 2)}, nil, 0, http2.ErrCodeProtocol},
		{"INITIAL_WINDOW_SIZE 2^31", []http2.Setting{s(4, 1<<31)}, nil, 0, http2.ErrCodeFlowControl},
		{"INITIAL_WINDOW_SIZE 2^31-1", []http2.Setting{s(4, 1<<31-1)}, []http2.Setting{s(4, 1<<31-1)}, 1<<31 - 1, 0},
		{"MAX_FRAME_SIZE 16383", []http2.Setting{s(5, 16383)}, nil, 0, http2.ErrCodeProtocol},
		{"MAX_FRAME_SIZE 2^24", []http2.Setting{s(5, 1<<24)}, nil, 0, http2.ErrCodeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, initial, err := checkSettings(settings(tc.in...))
			var ce *h2ConnError
			switch {
			case tc.code != 0:
				if !errors.As(err, &ce) || ce.code != tc.code {
					t.Errorf("err %v, want a %v connection error", err, tc.code)
				}
			case err != nil:
				t.Errorf("err %v", err)
			case !bytes.Equal(out, settings(tc.out...)) || initial != tc.initial:
				t.Errorf("got %x, %d; want %x, %d", out, initial, settings(tc.out...), tc.initial)
			}
		})
	}
}

// Streams whose response ended while the client's half is open count against
// the concurrent stream limit (RFC 9113 §5.1.2): the relay does not keep state
// for an unbounded number of them.
func TestH2RelayHalfOpenStreamsBounded(t *testing.T) {
	addr, _ := relayToLenient(t)
	p := dialH2(t, addr)
	last := uint32(2*h2MaxStreams + 1)
	for id := uint32(1); id < last; id += 2 {
		p.post(id) // the app answers at once; the client never ends its half
		if st, _, end := p.response(id); st != "200" {
			t.Fatalf("stream %d: %q %v", id, st, end)
		}
	}
	p.post(last)
	if f, ok := p.answer(last).(*http2.RSTStreamFrame); !ok || f.ErrCode != http2.ErrCodeRefusedStream {
		t.Errorf("stream %d: %v, want RST_STREAM REFUSED_STREAM", last, f)
	}
}

// Clients' protocol errors are counted on their flow (and by the agent, in
// hoptrace_client_protocol_errors_total): a malformed HTTP/1 request, an
// HTTP/2 stream error, an HTTP/2 connection error.
func TestClientProtocolErrorsCounted(t *testing.T) {
	obs := &observer{}
	p, err := New(Config{Direction: Inbound, Resolver: fixedResolver(lenientH2App(t, &frameLog{})),
		Recorder: &recorder{}, Sampler: spans.NewSampler(0), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	addr := start(t, p).Addr().String()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
	if b, _ := io.ReadAll(c); !strings.HasPrefix(string(b), "HTTP/1.1 400 ") {
		t.Fatalf("duplicate Host: %q", b)
	}
	c.Close()

	h2 := dialH2(t, addr)
	h2.get(1, "/", ":status", "200") // a stream error
	if f, ok := h2.answer(1).(*http2.RSTStreamFrame); !ok || f.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("want RST_STREAM PROTOCOL_ERROR, got %v", f)
	}
	h2.fr.WriteData(0, true, []byte("x")) // a connection error
	if f, ok := h2.answer(0).(*http2.GoAwayFrame); !ok || f.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("want GOAWAY PROTOCOL_ERROR, got %v", f)
	}
	for err == nil {
		_, err = h2.fr.ReadFrame()
	}

	eventually(t, "both connections to close", func() bool {
		_, flows := obs.snapshot()
		return len(flows) == 2
	})
	_, flows := obs.snapshot()
	got := map[Protocol]int64{}
	for _, f := range flows {
		got[f.Protocol] += f.ProtocolErrors
	}
	if got[ProtocolHTTP1] != 1 || got[ProtocolHTTP2] != 2 {
		t.Errorf("protocol errors counted: HTTP/1 %d, HTTP/2 %d; want 1 and 2", got[ProtocolHTTP1], got[ProtocolHTTP2])
	}
}

// A client that breaks the protocol gets its GOAWAY as the last frame, also when
// the upstream sends a frame just as the relay marks the client broken: toClient
// wakes for it and ends at the next frame boundary, and its end half-closes the
// client. The GOAWAY must be in the writer before toClient can see the break, or
// it goes out after the half-close and is lost (the client read a bare EOF, about
// once in a thousand runs under load); and the upstream's frame, arriving after
// the GOAWAY, must not follow it. The hook holds clientDone right after the
// break until toClient has ended.
func TestH2RelayBreakGoAwayRacesUpstream(t *testing.T) {
	broke, upEnded := make(chan struct{}), make(chan struct{})
	app := rawH2App(t, func(p *h2Peer) {
		defer close(upEnded)
		select {
		case <-broke:
		case <-time.After(5 * time.Second):
			return
		}
		p.fr.WritePing(false, [8]byte{1, 2, 3})
		for {
			if _, err := p.fr.ReadFrame(); err != nil {
				return // the relay closed the upstream: toClient ended
			}
		}
	})
	h2BreakHook = func(r *h2Relay) {
		if r.dst != app {
			return
		}
		close(broke)
		select {
		case <-upEnded:
		case <-time.After(2 * time.Second):
		}
	}
	t.Cleanup(func() { h2BreakHook = nil })
	_, ln := oneProxy(t, app, &recorder{})
	p := dialH2(t, ln.Addr().String())
	p.fr.WriteRSTStream(1, http2.ErrCodeCancel) // on an idle stream: a connection error
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", ga.ErrCode)
			}
			break
		}
	}
	if f, err := p.fr.ReadFrame(); err == nil {
		t.Fatalf("%v after the GOAWAY, want the end of the connection", f)
	}
}
