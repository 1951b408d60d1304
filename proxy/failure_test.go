package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hoptrace/hoptrace/spans"
)

const sampledHeader = "00-" + incomingTrace + "-" + incomingSpan + "-01"

// An unreachable upstream gets the client a 503 at once, never a hang, and
// error spans naming the failure.
func TestUpstreamDown(t *testing.T) {
	dead := listen(t)
	deadAddr := mustAddrPort(t, dead.Addr())
	dead.Close()
	c := newChain(t, deadAddr)
	client := c.client()
	client.Timeout = 5 * time.Second
	for range 2 { // the client connection survives a failed request
		resp := get(t, client, "http://svc-b.test/", map[string]string{"Traceparent": sampledHeader})
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", resp.StatusCode)
		}
	}
	legs := byLeg(t, c.rec.wait(t, 8)[4:])
	ic := legs["inbound-client"]
	if ic.Status != spans.StatusError || attr(ic, "error.type") != "connect" || !strings.Contains(ic.StatusMessage, "refused") {
		t.Errorf("inbound-client: status %d error.type %q message %q", ic.Status, attr(ic, "error.type"), ic.StatusMessage)
	}
	if s := legs["inbound-server"]; s.Status != spans.StatusError || attr(s, "http.response.status_code") != "503" {
		t.Errorf("inbound-server: status %d code %q", s.Status, attr(s, "http.response.status_code"))
	}
	// Upstream of the outbound proxy the 503 is a response like any other.
	if s := legs["outbound-server"]; s.Status != spans.StatusError || attr(s, "error.type") != "503" {
		t.Errorf("outbound-server: status %d error.type %q", s.Status, attr(s, "error.type"))
	}
	reqs, _ := c.inObs.snapshot()
	if len(reqs) != 2 || !reqs[0].Failed || reqs[0].Status != 503 {
		t.Errorf("inbound request stats %+v", reqs)
	}
}

// An upstream that breaks off mid-response: the client sees a truncated
// response (never a complete-looking one), and the client span errs.
func TestUpstreamResetMidResponse(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
		c.(*net.TCPConn).SetLinger(0)
	})
	c := newChain(t, appAddr)
	req, _ := http.NewRequest(http.MethodGet, "http://svc-b.test/", nil)
	req.Header.Set("Traceparent", sampledHeader)
	resp, err := c.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("a truncated body read as complete")
	}
	ic := byLeg(t, c.rec.wait(t, 4))["inbound-client"]
	if ic.Status != spans.StatusError || attr(ic, "error.type") != "upstream" {
		t.Errorf("inbound-client: status %d error.type %q", ic.Status, attr(ic, "error.type"))
	}
}

// An upstream that answers with garbage gets the client a 502.
func TestUpstreamGarbage(t *testing.T) {
	addr := rawApp(t, "SSH-2.0-OpenSSH_9.6\r\n", true)
	c := newChain(t, addr.AddrPort())
	if resp := get(t, c.client(), "http://svc-b.test/", nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

// h2cClient speaks HTTP/2 with prior knowledge to the chain's outbound proxy.
func (c *chain) h2cClient() *http.Client {
	addr := c.outLn.Addr().String()
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// h2cApp serves h on HTTP/2 without TLS (prior knowledge).
func h2cApp(t *testing.T, h http.Handler) *net.TCPAddr {
	t.Helper()
	s := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	s.Protocols.SetUnencryptedHTTP2(true)
	ln := listen(t)
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().(*net.TCPAddr)
}

// Plain HTTP/2 (not gRPC): many concurrent streams on one connection, trailers,
// and a traced chain.
func TestH2C(t *testing.T) {
	addr := h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "not h2", 500)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Traceparent", r.Header.Get("Traceparent"))
		io.WriteString(w, r.URL.Path+" "+string(body))
		w.Header().Set("X-Sum", "42")
	}))
	c := newChain(t, addr.AddrPort())
	client := c.h2cClient()
	req, _ := http.NewRequest(http.MethodPost, "http://svc-b.test/first", strings.NewReader("payload"))
	req.Header.Set("Traceparent", sampledHeader)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "/first payload" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("proto %d body %q trailer %v", resp.ProtoMajor, body, resp.Trailer)
	}
	legs := checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
	if got, want := resp.Header.Get("X-Traceparent"), "00-"+incomingTrace+"-"+legs["inbound-client"].SpanID.String()+"-01"; got != want {
		t.Errorf("app saw traceparent %q, want %q", got, want)
	}
	if got := attr(legs["outbound-server"], "network.protocol.version"); got != "2" {
		t.Errorf("protocol version %q", got)
	}

	// Concurrent streams share one connection to each proxy.
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			resp, err := client.Get("http://svc-b.test/s" + itoa64(int64(i)))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "/s"+itoa64(int64(i))+" " {
					err = io.ErrUnexpectedEOF
				}
			}
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.out.Flows()); n != 1 {
		t.Errorf("%d outbound connections, want 1", n)
	}
}

// HTTP/2 to an unreachable upstream: 503, quickly.
func TestH2CUpstreamDown(t *testing.T) {
	dead := listen(t)
	deadAddr := mustAddrPort(t, dead.Addr())
	dead.Close()
	c := newChain(t, deadAddr)
	client := c.h2cClient()
	client.Timeout = 5 * time.Second
	resp, err := client.Get("http://svc-b.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}

// CONNECT through the mesh to an app that is itself an HTTP proxy: after its
// 200 the bytes are tunnelled.
func TestConnectTunnel(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Method != http.MethodConnect {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
		line, _ := br.ReadString('\n')
		io.WriteString(c, "tunnelled: "+line)
	})
	c := newChain(t, appAddr)
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	io.WriteString(conn, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "tunnelled: hello\n" {
		t.Fatalf("%q %v", line, err)
	}
}

// A connection the proxy cannot serve (no original destination; addressed to
// the proxy's own listener) is closed, and the observer hears of it: the app
// sees a reset, and that must not go uncounted.
func TestRefusedConnectionsAreObserved(t *testing.T) {
	var self netip.AddrPort
	resolve := ResolverFunc(func(c net.Conn) (netip.AddrPort, error) {
		if mustAddrPort(t, c.RemoteAddr()).Port()%2 == 0 {
			return self, nil
		}
		return netip.AddrPort{}, errors.New("no record")
	})
	obs := &observer{}
	p, err := New(Config{Direction: Outbound, Resolver: resolve, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	self = mustAddrPort(t, ln.Addr()) // before Serve: the resolver reads it
	serveOn(t, p, ln)
	want := map[Refusal]int{}
	for range 6 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		why := RefusedNoOriginalDst
		if mustAddrPort(t, c.LocalAddr()).Port()%2 == 0 {
			why = RefusedSelf
		}
		want[why]++
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read from a refused connection: %d bytes, %v; want it closed", n, err)
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		obs.mu.Lock()
		got := map[Refusal]int{}
		for _, r := range obs.refused {
			got[r]++
		}
		obs.mu.Unlock()
		if maps.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refusals observed %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if RefusedNoOriginalDst.String() != "no-original-dst" || RefusedSelf.String() != "self" {
		t.Errorf("refusal names %q, %q", RefusedNoOriginalDst, RefusedSelf)
	}
}
