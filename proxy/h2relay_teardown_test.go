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

func oneProxy(t *testing.T, app netip.AddrPort, rec *recorder) (*Proxy, net.Listener) {
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
