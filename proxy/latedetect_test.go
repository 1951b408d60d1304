package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const lateDetect = 100 * time.Millisecond

func shortDetect(_ Direction, cfg *Config) { cfg.DetectTimeout = lateDetect }

// A client that opens its connection and sends its first request only after
// the detection timeout (a pool filled ahead of use, a load generator that
// connects first) is still served as HTTP: traced, four spans per request,
// its flows HTTP/1, not spliced as opaque.
func TestLateHTTPClientIsTraced(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "late "+r.URL.Path)
	}))
	c := newChain(t, appAddr, shortDetect, sampleAll)
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	time.Sleep(3 * lateDetect) // silent through detection, on both proxies
	br := bufio.NewReader(conn)
	for i := range 2 {
		fmt.Fprintf(conn, "GET /r%d HTTP/1.1\r\nHost: app.test\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("late /r%d", i); string(body) != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	ss := c.rec.wait(t, 8)
	byLeg(t, ss[:4])
	for _, p := range []*Proxy{c.out, c.in} {
		if f := p.Flows(); len(f) != 1 || f[0].Protocol != ProtocolHTTP1 {
			t.Errorf("%s flows %+v, want one HTTP/1 flow", p.cfg.Direction, f)
		}
	}
}

// The same for a TLS client that waits before its ClientHello: relayed as
// opaque, untouched, once it speaks.
func TestLateTLSClientSpliced(t *testing.T) {
	cert, pool := selfSigned(t)
	appAddr := tcpApp(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		io.Copy(tc, tc)
	})
	c := newChain(t, appAddr, shortDetect)
	raw := c.dial(t)
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	time.Sleep(3 * lateDetect)
	tc := tls.Client(raw, &tls.Config{ServerName: "svc-b.test", RootCAs: pool})
	if _, err := tc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(tc, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo %q %v", got, err)
	}
	for _, p := range []*Proxy{c.out, c.in} {
		if f := p.Flows(); len(f) != 1 || f[0].Protocol != ProtocolTLS {
			t.Errorf("%s flows %+v, want one TLS flow", p.cfg.Direction, f)
		}
	}
}

// A server that speaks first is heard at once after the detection timeout,
// and the exchange after its greeting goes both ways, as before.
func TestLateServerFirstStillSpliced(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) {
		io.WriteString(c, "220 greetings\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "250 "+line)
	})
	c := newChain(t, appAddr, shortDetect)
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	start := time.Now()
	greeting, err := br.ReadString('\n')
	if err != nil || greeting != "220 greetings\r\n" {
		t.Fatalf("greeting %q %v", greeting, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("greeting after %v", d)
	}
	io.WriteString(conn, "HELO x\r\n")
	if reply, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(reply, "250 HELO x") {
		t.Fatalf("reply %q %v", reply, err)
	}
	for _, p := range []*Proxy{c.out, c.in} {
		if f := p.Flows(); len(f) != 1 || f[0].Protocol != ProtocolOpaque {
			t.Errorf("%s flows %+v, want one opaque flow", p.cfg.Direction, f)
		}
	}
}
