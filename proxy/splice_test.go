package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// selfSigned makes a certificate for svc-b.test.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "svc-b.test"},
		DNSNames:     []string{"svc-b.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// tcpApp serves each accepted connection with handle.
func tcpApp(t testing.TB, handle func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return mustAddrPort(t, ln.Addr())
}

// Item 3: TLS crosses both proxies untouched: the client verifies the app's own
// certificate, and the flows say tls.
func TestTLSSpliced(t *testing.T) {
	cert, pool := selfSigned(t)
	appAddr := tcpApp(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		io.Copy(tc, tc) // echo
	})
	c := newChain(t, appAddr)
	tc := tls.Client(c.dial(t), &tls.Config{ServerName: "svc-b.test", RootCAs: pool})
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if got := tc.ConnectionState().PeerCertificates[0]; !got.Equal(cert.Leaf) {
		t.Fatal("the client saw a certificate that is not the app's")
	}
	payload := []byte(strings.Repeat("tls bytes ", 100000)) // 1 MB
	go tc.Write(payload)
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(tc, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(payload) {
		t.Fatal("echo differs")
	}
	for _, p := range []*Proxy{c.out, c.in} {
		// Counters move after each spliced piece: poll.
		eventually(t, "byte counts", func() bool {
			f := p.Flows()
			return len(f) == 1 && f[0].BytesIn >= int64(len(payload)) && f[0].BytesOut >= int64(len(payload))
		})
		if f := p.Flows(); f[0].Protocol != ProtocolTLS {
			t.Errorf("%s flows: %+v", p.cfg.Direction, f)
		}
	}
	tc.Close()
	eventually(t, "flows to close", func() bool {
		_, out := c.outObs.snapshot()
		_, in := c.inObs.snapshot()
		return len(out) == 1 && len(in) == 1
	})
	if ss := c.rec.all(); len(ss) != 0 {
		t.Errorf("spliced traffic produced spans: %v", spanNames(ss))
	}
}

// A server-speaks-first protocol: the client sends nothing until greeted. After
// the detection timeout the proxies splice, and the greeting gets through.
func TestServerSpeaksFirst(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) {
		io.WriteString(c, "220 smtp.svc-b.test ESMTP ready\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "221 bye after "+line)
	})
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) { cfg.DetectTimeout = 50 * time.Millisecond })
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	greeting, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("greeting %q %v", greeting, err)
	}
	io.WriteString(conn, "QUIT\r\n")
	reply, err := br.ReadString('\n')
	if err != nil || reply != "221 bye after QUIT\r\n" {
		t.Fatalf("reply %q %v", reply, err)
	}
	if f := c.out.Flows(); len(f) != 1 || f[0].Protocol != ProtocolOpaque {
		t.Errorf("flows %+v", f)
	}
}

// SkipDetect destinations are spliced without waiting.
func TestSkipDetect(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) { io.WriteString(c, "* OK IMAP4rev1\r\n") })
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) {
		cfg.DetectTimeout = 10 * time.Second
		cfg.SkipDetect = func(netip.AddrPort) bool { return true }
	})
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "* OK IMAP4rev1\r\n" {
		t.Fatalf("greeting %q %v", line, err)
	}
}

// A client that half-closes still gets the whole answer: the FIN travels on, and
// the other direction stays open.
func TestOpaqueHalfClose(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c) // until the client's FIN
		fmt.Fprintf(c, "got %d bytes", n)
	})
	c := newChain(t, appAddr)
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	payload := make([]byte, 3<<20)
	payload[0] = 0 // not HTTP
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(conn)
	if err != nil || string(reply) != fmt.Sprintf("got %d bytes", len(payload)) {
		t.Fatalf("reply %q %v", reply, err)
	}
}

// A reset from the app reaches the client as a reset, not as a clean end.
func TestOpaqueResetPropagates(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) {
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.(*net.TCPConn).SetLinger(0)
	})
	c := newChain(t, appAddr)
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte{0, 1, 2, 3, 4})
	_, err := conn.Read(make([]byte, 1))
	if err == nil || err == io.EOF {
		t.Fatalf("read after the app reset: %v, want a reset", err)
	}
}

// Item 6 (issue 11): a spliced connection on which neither side sends anything
// for SpliceIdleTimeout is closed on both sides, and counted; one side talking
// keeps it open.
func TestSilentSpliceClosed(t *testing.T) {
	const idle = 400 * time.Millisecond
	appSaw := make(chan error, 2)
	appAddr := tcpApp(t, func(c net.Conn) {
		// Server speaks first, for a while, then falls silent; the client never
		// says anything.
		var line [1]byte
		for i := range 5 {
			line[0] = byte('0' + i)
			if _, err := c.Write(line[:]); err != nil {
				appSaw <- err
				return
			}
			time.Sleep(idle / 2)
		}
		_, err := c.Read(line[:])
		appSaw <- err
	})
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) { cfg.SpliceIdleTimeout = idle })
	conn := c.dial(t)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 0, 5)
	var last time.Time
	buf := make([]byte, 16)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			got, last = append(got, buf[:n]...), time.Now()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %q: %v, want the proxy to close the silent connection", got, err)
		}
	}
	quietFor := time.Since(last)
	// Talking one way for longer than the timeout kept the connection open.
	if string(got) != "01234" {
		t.Fatalf("got %q before the close, want all five bytes", got)
	}
	// Deadlines, not a sweep: never before a whole timeout of silence.
	if quietFor < idle-idle/10 {
		t.Errorf("closed %v after the last byte, before the %v idle timeout", quietFor, idle)
	}
	select {
	case err := <-appSaw:
		if err != io.EOF {
			t.Errorf("the app's side ended with %v, want EOF (a FIN, not a reset)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the app's side of the connection was left open")
	}
	for i, o := range []*observer{c.outObs, c.inObs} {
		eventually(t, "the closed flow to be reported", func() bool {
			_, flows := o.snapshot()
			return len(flows) == 1
		})
		_, flows := o.snapshot()
		// Both proxies last heard the same byte, microseconds apart, so their
		// timers fire about together: the inbound one's usually first, but on
		// a busy machine (or handed off in memory) the outbound one's may, and
		// the inbound proxy then hears that close as an ordinary end. The
		// outbound proxy always waits out its own timer on the silent client.
		mayEnd := i == 1
		if !flows[0].IdleClosed && !mayEnd || flows[0].Protocol != ProtocolOpaque {
			t.Errorf("flow %+v: want an opaque flow closed for idleness", flows[0])
		}
	}
}

// A negative SpliceIdleTimeout keeps silent connections open.
func TestSilentSpliceKeptWhenDisabled(t *testing.T) {
	appAddr := tcpApp(t, func(c net.Conn) { io.Copy(c, c) })
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) { cfg.SpliceIdleTimeout = -1 })
	conn := c.dial(t)
	conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent connection: %v, want it still open after a second", err)
	}
	if _, err := io.WriteString(conn, "ping"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(conn, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo after a silence: %q, %v", b, err)
	}
}
