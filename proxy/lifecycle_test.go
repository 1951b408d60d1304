package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

func TestNewChecksConfig(t *testing.T) {
	if _, err := New(Config{Direction: Outbound}); err == nil {
		t.Error("no resolver accepted")
	}
	if _, err := New(Config{Resolver: LocalAddrResolver}); err == nil {
		t.Error("no direction accepted")
	}
	p, err := New(Config{Direction: Inbound, Resolver: LocalAddrResolver})
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.HeaderTimeout != DefaultHeaderTimeout || p.cfg.MaxHeaderBytes != DefaultMaxHeaderBytes {
		t.Errorf("defaults not applied: %+v", p.cfg)
	}
}

// Shutdown lets a request in flight finish (telling its client the connection
// ends), closes idle connections, and makes Serve return ErrClosed.
func TestShutdownGraceful(t *testing.T) {
	release := make(chan struct{})
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	}))
	// The outbound proxy here is not the chain's: Serve's return is checked.
	in := newChain(t, appAddr)
	p, err := New(Config{Direction: Outbound, Resolver: fixedResolver(mustAddrPort(t, in.inLn.Addr()))})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()

	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	idleBR := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(idleBR, nil); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}

	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	eventually(t, "the slow request to be in flight", func() bool {
		for _, f := range p.Flows() {
			if f.Protocol == ProtocolHTTP1 && f.BytesIn > 0 && f.Requests == 0 && len(p.Flows()) == 2 {
				return true
			}
		}
		return false
	})

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- p.Shutdown(ctx)
	}()
	// The idle connection is closed, and no new connection is accepted.
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idleBR.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve returned %v", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "done" || !resp.Close {
		t.Errorf("in-flight response %q close=%v", b, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// Shutdown gives up at its deadline and closes what is left.
func TestShutdownDeadline(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) { io.Copy(c, c) })
	c := newChain(t, appAddr)
	conn := c.dial(t)
	conn.Write([]byte{0, 1, 2}) // an opaque splice that never ends by itself
	eventually(t, "the splice", func() bool { return len(c.out.Flows()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.out.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil && !isReset(err) {
		t.Errorf("connection not closed: %v", err)
	}
}

// The observer gets per-request leg times and a record per closed connection.
func TestObserver(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, "ok")
	}))
	c := newChain(t, appAddr)
	tr := c.transport()
	client := &http.Client{Transport: tr}
	for range 3 {
		get(t, client, "http://svc-b.test/", map[string]string{"Traceparent": sampledHeader})
	}
	tr.CloseIdleConnections()
	eventually(t, "the flow to close", func() bool {
		_, flows := c.outObs.snapshot()
		return len(flows) == 1
	})
	reqs, flows := c.outObs.snapshot()
	if len(reqs) != 3 {
		t.Fatalf("%d requests observed", len(reqs))
	}
	for _, r := range reqs {
		server, client := r.Legs()
		if server != spans.OutboundServer || client != spans.OutboundClient || r.Protocol != ProtocolHTTP1 ||
			r.Status != 200 || r.Method != "GET" || r.Failed || r.GRPCStatus != -1 {
			t.Errorf("request stats %+v", r)
		}
		if r.ClientTime < 5*time.Millisecond || r.ServerTime < r.ClientTime {
			t.Errorf("leg times server %v client %v", r.ServerTime, r.ClientTime)
		}
		if r.TraceID.String() != incomingTrace || r.Dst != mustAddrPort(t, c.inLn.Addr()) {
			t.Errorf("trace %s dst %v", r.TraceID, r.Dst)
		}
	}
	f := flows[0]
	if f.Requests != 3 || f.Protocol != ProtocolHTTP1 || f.End.IsZero() || f.BytesIn == 0 || f.BytesOut == 0 ||
		f.ServerTime < 15*time.Millisecond || f.LastTraceID.String() != incomingTrace || f.Direction != Outbound {
		t.Errorf("flow stats %+v", f)
	}
	in, _ := c.inObs.snapshot()
	if len(in) != 3 {
		t.Fatalf("%d inbound requests observed", len(in))
	}
	if s, cl := in[0].Legs(); s != spans.InboundServer || cl != spans.InboundClient {
		t.Errorf("inbound legs %v %v", s, cl)
	}
}

// A connection addressed to the proxy's own listener is refused: dialing its
// "original destination" would loop.
func TestLoopRefused(t *testing.T) {
	p, err := New(Config{Direction: Inbound, Resolver: LocalAddrResolver})
	if err != nil {
		t.Fatal(err)
	}
	ln := start(t, p)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
		t.Errorf("read %v, want the connection closed", err)
	}
}
