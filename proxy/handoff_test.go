package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/hoptrace/hoptrace/spans"
)

// readCountingListener counts the bytes the proxy reads from the TCP
// connections it accepts.
type readCountingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l readCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readCountingConn{Conn: c, n: l.n}, nil
}

type readCountingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *readCountingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func sampleAll(_ Direction, cfg *Config) { cfg.Sampler = spans.NewSampler(1) }

// With a hand-off the hop's requests and responses reach the inbound proxy
// without one byte through the TCP connection between the proxies, and the
// trace is the same four legs, parented as over TCP. The same test without
// the hand-off is what shows the counting would see them.
func TestHandoffKeepsTheHopOffTCP(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Traceparent", r.Header.Get("Traceparent"))
		fmt.Fprintf(w, "%s %d", r.URL.Path, n)
	}))
	for _, handoff := range []bool{false, true} {
		t.Run(fmt.Sprintf("handoff=%v", handoff), func(t *testing.T) {
			var tcpRead atomic.Int64
			opts := []chainOption{sampleAll}
			h := NewHandoff()
			if handoff {
				opts = append(opts, withHandoff(h))
			} else {
				opts = append(opts, withHandoff(nil)) // also under HOPTRACE_TEST_HANDOFF
			}
			c := newChainWith(t, appAddr, func(ln net.Listener) net.Listener {
				return readCountingListener{Listener: ln, n: &tcpRead}
			}, opts...)
			client := c.client()
			big := bytes.Repeat([]byte("x"), 3<<20) // more than a memPipe holds
			const requests = 10
			for i := range requests {
				var body io.Reader
				want := fmt.Sprintf("/r%d 0", i)
				if i == 3 {
					body, want = bytes.NewReader(big), fmt.Sprintf("/r%d %d", i, len(big))
				}
				req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://app.test/r%d", i), body)
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(got) != want {
					t.Fatalf("request %d: %q %v, want %q", i, got, err, want)
				}
			}
			ss := c.rec.wait(t, 4*requests)
			legs := byLeg(t, ss[:4])
			if in, out := legs["inbound-server"], legs["outbound-client"]; in.ParentID != out.SpanID || in.TraceID != out.TraceID {
				t.Errorf("inbound-server %v/%v, want parent %v in trace %v", in.TraceID, in.ParentID, out.SpanID, out.TraceID)
			}
			st := h.Stats()
			switch {
			case !handoff && tcpRead.Load() == 0:
				t.Error("over TCP the inbound proxy read nothing from its connections: the counting is broken")
			case handoff && tcpRead.Load() != 0:
				t.Errorf("the inbound proxy read %d bytes from TCP, want all in memory", tcpRead.Load())
			case handoff && (st.Matched == 0 || st.Missed != 0):
				t.Errorf("hand-off stats %+v, want matches and no misses", st)
			}
		})
	}
}

// A destination that is a hand-off target but whose connection no inbound
// proxy of this process accepts (the pod was just released, say) is waited
// for once, then used over TCP.
func TestHandoffFallsBackToTCP(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "direct") }))
	h := NewHandoff()
	h.SetTargets([]HandoffTarget{{Addrs: []netip.Addr{appAddr.Addr()}}})
	out, err := New(Config{Direction: Outbound, Resolver: fixedResolver(appAddr), Handoff: h})
	if err != nil {
		t.Fatal(err)
	}
	ln := start(t, out)
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "direct" {
		t.Fatalf("got %q", got)
	}
	if st := h.Stats(); st.Matched != 0 || st.Missed != 1 {
		t.Errorf("stats %+v, want one miss", st)
	}
}

// A local client that connects to an inbound proxy on its own, with no
// hand-off dial on its way, is served at once: nobody waits for a meeting.
func TestHandoffLeavesOtherClientsAlone(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	h := NewHandoff()
	c := newChain(t, appAddr, withHandoff(h))
	h.SetTargets([]HandoffTarget{{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}})
	start := time.Now()
	resp, err := http.Get("http://" + c.inLn.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if st := h.Stats(); st != (HandoffStats{}) {
		t.Errorf("stats %+v after a direct connection, want none: it waited for a meeting", st)
	}
	if d := time.Since(start); d >= handoffWait {
		t.Logf("took %v (a slow machine?)", d)
	}
}

// SetTargets' skipped ports are not handed off: the app answers them itself.
func TestHandoffSkipsSkippedPorts(t *testing.T) {
	h := NewHandoff()
	pod := netip.MustParseAddr("10.0.0.7")
	h.SetTargets([]HandoffTarget{{Addrs: []netip.Addr{pod}, SkipPorts: []uint16{9090}}})
	for _, tc := range []struct {
		dst  string
		want bool
	}{
		{"10.0.0.7:8080", true},
		{"10.0.0.7:9090", false},
		{"10.0.0.8:8080", false},
		{"[::ffff:10.0.0.7]:8080", true},
		{"not an address", false},
	} {
		ap, ok := h.announce(tc.dst)
		if ok != tc.want {
			t.Errorf("announce(%s) = %v, want %v", tc.dst, ok, tc.want)
		}
		if ok {
			h.abandon(ap)
		}
	}
	if len(h.dialing) != 0 {
		t.Errorf("announcements left behind: %v", h.dialing)
	}
}

// memConn behaves as a net.Conn must (x/net's conformance suite: timeouts,
// concurrent use, close).
func TestMemConnIsAConn(t *testing.T) {
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
		a, b := newMemConnPair(nil, nil)
		return a, b, func() { a.Close(); b.Close() }, nil
	})
}

// What the proxy relies on beyond net.Conn: half-close, a reset on Close
// after SetLinger(0) and on Close with unread bytes, a wait that reads
// nothing, and no buffer held once everything was read.
func TestMemConnSocketSemantics(t *testing.T) {
	a, b := newMemConnPair(nil, nil)
	defer a.Close()
	defer b.Close()

	if !b.quiet() {
		t.Fatal("a new connection is not quiet")
	}
	a.Write([]byte("hello"))
	if err := b.awaitReadable(); err != nil || b.quiet() {
		t.Fatalf("awaitReadable %v, quiet %v after a write", err, b.quiet())
	}
	a.CloseWrite()
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q %v, want hello then EOF", got, err)
	}
	if b.in.buf != nil {
		t.Error("a drained direction still holds its buffer")
	}
	if _, err := b.Write([]byte("back")); err != nil {
		t.Fatalf("the other direction after a half-close: %v", err)
	}
	if _, err := a.Write([]byte("x")); err == nil {
		t.Error("a write after CloseWrite succeeded")
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "back" {
		t.Fatalf("read %q %v", buf, err)
	}

	c, d := newMemConnPair(nil, nil)
	c.SetLinger(0)
	c.Close()
	if _, err := d.Read(buf); !isReset(err) {
		t.Errorf("read after the peer's abortive close: %v, want a reset", err)
	}

	e, f := newMemConnPair(nil, nil)
	e.Write([]byte("never read"))
	f.Close()
	if _, err := e.Read(buf); !isReset(err) {
		t.Errorf("read after the peer closed with unread bytes: %v, want a reset", err)
	}
	if _, err := e.Write([]byte("more")); err == nil {
		t.Error("a write to a closed peer succeeded")
	}
	e.Close()

	g, h := newMemConnPair(nil, nil)
	defer g.Close()
	defer h.Close()
	h.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := h.awaitReadable(); !isTimeout(err) {
		t.Errorf("awaitReadable past the deadline: %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Many connections meeting at once each find their own peer: every request
// gets its own answer, every upstream connection was handed off, none missed.
func TestHandoffConcurrentMeetings(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	h := NewHandoff()
	c := newChain(t, appAddr, withHandoff(h))
	const clients, each = 40, 5
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			// One connection per client: the outbound proxy needs as many
			// upstream connections as clients are in flight.
			tr := c.transport()
			tr.DisableKeepAlives = true
			client := &http.Client{Transport: tr}
			for j := range each {
				path := fmt.Sprintf("/c%d/r%d", i, j)
				resp, err := client.Get("http://app.test" + path)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(got) != path {
					errs <- fmt.Errorf("%s: got %q %v", path, got, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := h.Stats()
	if st.Matched == 0 || st.Missed != 0 {
		t.Errorf("stats %+v, want matches and no misses", st)
	}
	_, outFlows := c.outObs.snapshot()
	t.Logf("%d hand-offs for %d client connections (%d flows closed)", st.Matched, clients*each, len(outFlows))
}

// fakeIdentity names a loopback connection by its two ports, as both ends see
// them, standing in for the BPF record of the sequence numbers; serverPort is
// the inbound listener's. ours says which ends count as this process's, asked
// by the server's end (the inbound proxy) or the client's (the dialer).
func fakeIdentity(serverPort uint16, ours func(e ConnEnds, byServer bool) ConnEnds) IdentifyFunc {
	return func(c net.Conn) (ConnID, ConnEnds, bool) {
		l, ok1 := addrPort(c.LocalAddr())
		r, ok2 := addrPort(c.RemoteAddr())
		if !ok1 || !ok2 {
			return ConnID{}, ConnEnds{}, false
		}
		if l.Port() == serverPort {
			return ConnID{Client: uint32(r.Port()), Server: uint32(l.Port())}, ours(ConnEnds{Client: true, Server: true}, true), true
		}
		return ConnID{Client: uint32(l.Port()), Server: uint32(r.Port())}, ours(ConnEnds{Client: true, Server: true}, false), true
	}
}

// chainByIdentity is a chain whose outbound proxy does not know the inbound
// one's address as a pod's (no targets), as for a Service's virtual IP: only
// the identity can pair the two sides.
func chainByIdentity(t *testing.T, ours func(ConnEnds, bool) ConnEnds) (*chain, *Handoff, *atomic.Int64) {
	return chainByIdentityFrom(t, true, ours)
}

// chainByIdentityFrom is chainByIdentity; with localClient false the client's
// address is no local pod's, as when kube-proxy masquerades a pod's call to a
// Service it backs itself.
func chainByIdentityFrom(t *testing.T, localClient bool, ours func(ConnEnds, bool) ConnEnds) (*chain, *Handoff, *atomic.Int64) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %d", r.URL.Path, n)
	}))
	var tcpRead atomic.Int64
	h := NewHandoff()
	c := newChainWith(t, appAddr, func(ln net.Listener) net.Listener {
		return readCountingListener{Listener: ln, n: &tcpRead}
	}, withHandoff(h))
	h.SetTargets(nil)
	if localClient {
		h.SetTargets([]HandoffTarget{{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, SkipPorts: []uint16{mustAddrPort(t, c.inLn.Addr()).Port()}}})
	}
	h.IdentifyBy(fakeIdentity(mustAddrPort(t, c.inLn.Addr()).Port(), ours))
	return c, h, &tcpRead
}

func getThrough(t *testing.T, c *chain, n int) {
	t.Helper()
	client := c.client()
	for i := range n {
		resp, err := client.Post(fmt.Sprintf("http://app.test/r%d", i), "text/plain", bytes.NewReader([]byte("abc")))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("/r%d 3", i); err != nil || string(got) != want {
			t.Fatalf("request %d: %q %v, want %q", i, got, err, want)
		}
	}
}

// A dial the outbound proxy cannot tell is local (a Service's virtual IP,
// which the inbound proxy sees as the backend's address) is handed off when
// the connection's identity says both ends are this process's.
func TestHandoffByIdentity(t *testing.T) {
	c, h, tcpRead := chainByIdentity(t, func(e ConnEnds, _ bool) ConnEnds { return e })
	getThrough(t, c, 5)
	if st := h.Stats(); st.Matched != 1 || st.Missed != 0 {
		t.Errorf("hand-off stats %+v, want 1 match and no misses", st)
	}
	if n := tcpRead.Load(); n != 0 {
		t.Errorf("the inbound proxy read %d bytes from TCP, want all in memory", n)
	}
}

// The dialer's end established before the accepting end's was recorded (the
// server's ACK still in the kernel): the dialer cannot know the other end is
// here and goes over TCP, and the accepting side, which sees that the client
// is this process's, must not then wait for a meeting that will not come.
func TestHandoffByIdentityDialerFirst(t *testing.T) {
	// The dialer asks first and finds the server's end not recorded yet; the
	// accepting side asks only after that, as the kernel orders it (the
	// server's end is recorded when the client's ACK arrives).
	dialerAsked := make(chan struct{})
	var once sync.Once
	c, h, tcpRead := chainByIdentity(t, func(e ConnEnds, byServer bool) ConnEnds {
		if byServer {
			select {
			case <-dialerAsked:
			case <-time.After(5 * time.Second):
			}
			return e
		}
		first := false
		once.Do(func() { first = true; close(dialerAsked) })
		if first {
			e.Server = false
		}
		return e
	})
	getThrough(t, c, 3)
	if st := h.Stats(); st.Matched != 0 || st.Missed != 0 {
		t.Errorf("hand-off stats %+v, want neither a match nor a side that waited in vain", st)
	}
	if tcpRead.Load() == 0 {
		t.Error("the inbound proxy read nothing from TCP, want the connection there")
	}
}

// A client that is not this process's proxy (its end is no socket of ours) is
// not waited for.
func TestHandoffByIdentityForeignClient(t *testing.T) {
	c, h, _ := chainByIdentity(t, func(e ConnEnds, _ bool) ConnEnds { return ConnEnds{Server: e.Server} })
	getThrough(t, c, 2)
	if st := h.Stats(); st.Matched != 0 || st.Missed != 1 {
		// The dialer saw the server end as ours and waited in vain once;
		// the accepting side, seeing a foreign client, did not wait.
		t.Errorf("hand-off stats %+v, want no match and the dialer's one miss", st)
	}
}

// Masqueraded: the inbound side sees a client address that is no local pod's,
// and pairs by identity all the same (else the dialer, which saw the accepting
// end is ours, would wait in vain on every new connection).
func TestHandoffByIdentityMasqueraded(t *testing.T) {
	c, h, tcpRead := chainByIdentityFrom(t, false, func(e ConnEnds, _ bool) ConnEnds { return e })
	getThrough(t, c, 3)
	if st := h.Stats(); st.Matched != 1 || st.Missed != 0 {
		t.Errorf("hand-off stats %+v, want 1 match and no misses", st)
	}
	if n := tcpRead.Load(); n != 0 {
		t.Errorf("the inbound proxy read %d bytes from TCP, want all in memory", n)
	}
}

// A pod calls another pod of the node by its address and, at the same time,
// through a Service's virtual IP: the first dial is announced, so the inbound
// side of the second (same client pod, same destination once DNATed) takes
// it for the announced one and waits under its four-tuple, while its dialer
// waits under the identity. Both used to wait handoffWait in vain; the
// inbound side now asks for the identity when the announced dial does not come
// at once, and the two meet in either order.
func TestHandoffServiceDialBesideAnnouncedDial(t *testing.T) {
	for _, dialerFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("dialerFirst=%v", dialerFirst), func(t *testing.T) {
			h, dst, client, server := announcedDial(t)
			defer h.abandon(dst) // the pod-address dial, in flight for the whole test

			start := time.Now()
			outc := make(chan net.Conn, 1)
			dial := func() { outc <- h.dialedUnannounced(client) }
			if dialerFirst {
				go dial()
				time.Sleep(5 * time.Millisecond)
			} else {
				go func() { time.Sleep(5 * time.Millisecond); dial() }()
			}
			in := h.accepted(server, dst)
			out := <-outc
			took := time.Since(start)

			if _, ok := out.(*memConn); !ok {
				t.Errorf("dialer got %T, want the in-memory end", out)
			}
			if _, ok := in.(*memConn); !ok {
				t.Errorf("accepting side got %T, want the in-memory end", in)
			}
			if took >= handoffWait {
				t.Errorf("the two sides met after %v, want well within handoffWait (%v)", took, handoffWait)
			}
			if st := h.Stats(); st.Matched != 1 || st.Missed != 0 {
				t.Errorf("stats %+v, want 1 match, no misses", st)
			}
			h.mu.Lock()
			left := len(h.first)
			h.mu.Unlock()
			if left != 0 {
				t.Errorf("%d meetings left registered after the match", left)
			}
			if _, ok := out.(*memConn); ok {
				go out.Write([]byte("ping"))
				in.SetReadDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 4)
				if _, err := io.ReadFull(in, b); err != nil || string(b) != "ping" {
					t.Errorf("read %q, %v through the pair, want ping", b, err)
				}
			}
		})
	}
}

// An accepted connection that waited past identifyAfter under both its
// four-tuple and its identity still pairs with the announced dial when that
// comes late, and leaves neither key behind.
func TestHandoffLateAnnouncedDialAfterIdentity(t *testing.T) {
	h, dst, client, server := announcedDial(t)

	outc := make(chan net.Conn, 1)
	go func() {
		time.Sleep(10 * identifyAfter)
		outc <- h.dialed(client, dst)
	}()
	in := h.accepted(server, dst)
	out := <-outc
	_, okIn := in.(*memConn)
	_, okOut := out.(*memConn)
	if !okIn || !okOut {
		t.Errorf("got %T and %T, want both in-memory ends", in, out)
	}
	h.mu.Lock()
	left, dialing := len(h.first), len(h.dialing)
	h.mu.Unlock()
	if left != 0 || dialing != 0 {
		t.Errorf("%d meetings and %d announcements left after the match", left, dialing)
	}
	if st := h.Stats(); st.Matched != 1 || st.Missed != 0 {
		t.Errorf("stats %+v, want 1 match, no misses", st)
	}
}

// announcedDial sets up a Handoff whose only target is a loopback listener,
// with an identity for connections (every end this process's) and one dial to
// the listener announced; it returns both ends of a connection to it.
func announcedDial(t *testing.T) (h *Handoff, dst netip.AddrPort, client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dst = mustAddrPort(t, ln.Addr())
	h = NewHandoff()
	h.SetTargets([]HandoffTarget{{Addrs: []netip.Addr{dst.Addr()}}})
	h.IdentifyBy(fakeIdentity(dst.Port(), func(e ConnEnds, _ bool) ConnEnds { return e }))
	if _, ok := h.announce(dst.String()); !ok {
		t.Fatal("the listener's address is not a target")
	}
	client, server = tcpPair(t, ln)
	t.Cleanup(func() { client.Close(); server.Close() })
	return h, dst, client, server
}
