package proxy

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hoptrace/hoptrace/spans"
)

func oneProxy(t testing.TB, app netip.AddrPort, rec *recorder) (*Proxy, net.Listener) {
	cfg := Config{Direction: Outbound, Resolver: fixedResolver(app), Recorder: rec, Sampler: spans.NewSampler(0)}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, start(t, p)
}

// The relay's GOAWAY on Shutdown, then the upstream's graceful-stop
// GOAWAY(2^31-1): the client must not see the last-stream-id go up (grpc-go
// drops the connection, and every call on it, when it does).
func TestH2RelayGoAwayNeverIncreases(t *testing.T) {
	got, goNow := make(chan struct{}), make(chan struct{})
	app := rawH2App(t, func(p *h2Peer) {
		for {
			f, err := p.next()
			if err != nil {
				return
			}
			if _, ok := f.(*http2.MetaHeadersFrame); ok {
				close(got)
				<-goNow
				p.fr.WriteGoAway(1<<31-1, http2.ErrCodeNo, nil)
				time.Sleep(100 * time.Millisecond)
				p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: p.block(":status", "200"), EndHeaders: true, EndStream: true})
				time.Sleep(time.Second)
				return
			}
		}
	})
	px, ln := oneProxy(t, app, &recorder{})
	c := dialH2(t, ln.Addr().String())
	c.get(1, "/")
	<-got
	go px.Shutdown(context.Background())
	var last []uint32
	for len(last) < 2 {
		f, err := c.next()
		if err != nil {
			t.Fatalf("after %v: %v", last, err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			last = append(last, ga.LastStreamID)
			if len(last) == 1 {
				close(goNow)
			}
		}
	}
	if last[1] > last[0] {
		t.Errorf("GOAWAY last-stream-id went %d then %d", last[0], last[1])
	}
}

// An upstream RST_STREAM: the client leg must not end after the server leg.
func TestH2RelayLegsNestOnReset(t *testing.T) {
	app := rawH2App(t, func(p *h2Peer) {
		for {
			f, err := p.next()
			if err != nil {
				return
			}
			if hf, ok := f.(*http2.MetaHeadersFrame); ok {
				p.fr.WriteRSTStream(hf.StreamID, http2.ErrCodeInternal)
			}
		}
	})
	rec := &recorder{}
	_, ln := oneProxy(t, app, rec)
	c := dialH2(t, ln.Addr().String())
	c.get(1, "/", "traceparent", sampledHeader)
	c.response(1)
	legs := byLeg(t, rec.wait(t, 2))
	srv, cli := legs["outbound-server"], legs["outbound-client"]
	if cli.End.After(srv.End) {
		t.Errorf("client leg ends %v after the server leg", cli.End.Sub(srv.End))
	}
}

// A client that stops reading and then breaks the protocol: the relay's GOAWAY
// to it must not wait for ever behind a flush that cannot finish, and the
// upstream connection must be torn down.
func TestH2RelayStalledClientTornDown(t *testing.T) {
	appErr := make(chan error, 1)
	app := rawH2App(t, func(p *h2Peer) {
		p.conn.SetDeadline(time.Time{})
		for {
			f, err := p.next()
			if err != nil {
				return
			}
			if hf, ok := f.(*http2.MetaHeadersFrame); ok {
				p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: p.block(":status", "200"), EndHeaders: true})
				buf := make([]byte, 2000)
				for {
					if err := p.fr.WriteData(hf.StreamID, false, buf); err != nil {
						appErr <- err
						return
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
		}
	})
	_, ln := oneProxy(t, app, &recorder{})
	c := dialH2(t, ln.Addr().String())
	c.conn.(*net.TCPConn).SetReadBuffer(4096)
	c.conn.SetDeadline(time.Time{})
	c.get(1, "/")
	time.Sleep(3 * time.Second) // the proxy's writes to us fill up
	// CONTINUATION without HEADERS: a connection error.
	c.fr.WriteContinuation(1, true, []byte{0x82})
	select {
	case err := <-appErr:
		t.Logf("upstream connection torn down: %v", err)
	case <-time.After(5 * time.Second):
		t.Error("upstream connection still open 5s after the client's protocol error")
	}
}

// shortPings makes the relay's upstream liveness check fast for one test.
func shortPings(t *testing.T, after, within time.Duration) {
	a, w := h2ReadIdleTimeout, h2PingTimeout
	h2ReadIdleTimeout, h2PingTimeout = after, within
	t.Cleanup(func() { h2ReadIdleTimeout, h2PingTimeout = a, w })
}

// An upstream that goes silent with a stream open (its node vanished: no FIN,
// no reset) is pinged and dropped when the ping goes unanswered: the client
// gets its 502 within the ping timeouts instead of waiting minutes for TCP.
func TestH2RelayDropsSilentUpstream(t *testing.T) {
	shortPings(t, 100*time.Millisecond, 200*time.Millisecond)
	app := rawH2App(t, func(p *h2Peer) {
		p.conn.SetDeadline(time.Time{})
		for {
			f, err := p.next()
			if err != nil {
				return
			}
			if _, ok := f.(*http2.MetaHeadersFrame); ok {
				time.Sleep(5 * time.Second) // reads nothing, answers nothing
				return
			}
		}
	})
	_, ln := oneProxy(t, app, &recorder{})
	c := dialH2(t, ln.Addr().String())
	start := time.Now()
	c.get(1, "/")
	if status, _, _ := c.response(1); status != "502" {
		t.Errorf("status %q, want 502 from the relay", status)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the silent upstream was dropped after %v", d)
	}
}

// An upstream that is slow to answer but alive answers the relay's pings: the
// stream survives, and the client never sees the relay's ping acknowledgements.
func TestH2RelayPingsLiveUpstream(t *testing.T) {
	shortPings(t, 100*time.Millisecond, 200*time.Millisecond)
	app := rawH2App(t, func(p *h2Peer) {
		p.conn.SetDeadline(time.Time{})
		for {
			f, err := p.next()
			if err != nil {
				return
			}
			if hf, ok := f.(*http2.MetaHeadersFrame); ok {
				// A second of work, reading (and answering pings) meanwhile.
				p.conn.SetReadDeadline(time.Now().Add(time.Second))
				for {
					if _, err := p.next(); err != nil {
						break
					}
				}
				p.conn.SetReadDeadline(time.Time{})
				p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: p.block(":status", "200"), EndHeaders: true, EndStream: true})
			}
		}
	})
	_, ln := oneProxy(t, app, &recorder{})
	c := dialH2(t, ln.Addr().String())
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	c.get(1, "/")
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the response: %v", err)
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			t.Errorf("the client got a PING (ack %v) it never sent", f.IsAck())
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("stream ended with %v", f)
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				if s := f.PseudoValue("status"); s != "200" {
					t.Errorf("status %q, want 200", s)
				}
				return
			}
		}
	}
}

// Shutdown's GOAWAY and the upstream's end at the same instant: drain has
// claimed the GOAWAY (so upstreamDone writes none) but not sent it yet when
// the upstream goes. The client must still get it before the end of the
// connection, not a bare EOF.
func TestH2RelayDrainGoAwayRacesUpstream(t *testing.T) {
	got, draining, upEnded := make(chan struct{}), make(chan struct{}), make(chan struct{})
	app := rawH2App(t, func(p *h2Peer) {
		defer close(upEnded)
		for {
			f, err := p.next()
			if err != nil {
				return
			}
			if _, ok := f.(*http2.MetaHeadersFrame); ok {
				close(got)
				<-draining
				return // the upstream goes away with the stream open
			}
		}
	})
	h2DrainHook = func(r *h2Relay) {
		if r.dst != app {
			return
		}
		close(draining)
		<-upEnded
		// Time for toClient to see the end and run upstreamDone, which
		// half-closed the client before the GOAWAY went out.
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() { h2DrainHook = nil })
	px, ln := oneProxy(t, app, &recorder{})
	c := dialH2(t, ln.Addr().String())
	c.get(1, "/")
	<-got
	go px.Shutdown(context.Background())
	for {
		f, err := c.next()
		if err != nil {
			t.Fatalf("the connection ended without a GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeNo {
				t.Fatalf("GOAWAY %v, want NO_ERROR", ga.ErrCode)
			}
			return
		}
	}
}
