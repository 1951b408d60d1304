package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/hoptrace/hoptrace/internal/rawsock"
)

// wrappedPair returns a connection wrapped as the proxy wraps its sockets
// (rawsock), connected over loopback to a plain *net.TCPConn.
func wrappedPair(t *testing.T) (net.Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, peer := tcpPair(t, ln)
	s := rawsock.Wrap(c)
	if s == c {
		t.Fatalf("rawsock.Wrap(%T) did not wrap it", c)
	}
	t.Cleanup(func() { s.Close(); peer.Close() })
	return s, peer.(*net.TCPConn)
}

// TestSockKeepsTCPConnMethods: what the proxy asks of sockets beyond net.Conn
// (half-close, reset, the fd for peeks and BPF look-ups) still works through
// a sock, and anything not a TCP socket is left alone.
func TestSockKeepsTCPConnMethods(t *testing.T) {
	s, peer := wrappedPair(t)
	var c net.Conn = s
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Fatal("sock lost CloseWrite")
	}
	if _, ok := c.(interface{ SetLinger(int) error }); !ok {
		t.Fatal("sock lost SetLinger")
	}
	if err := closeWrite(c); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(peer); err != nil || len(b) != 0 {
		t.Fatalf("peer after our half-close: %q, %v", b, err)
	}
	peer.Write([]byte("p"))
	w := newPeeker(c)
	if err := w.wait(); err != nil {
		t.Fatalf("peek through a sock: %v", err)
	}
	if b := make([]byte, 1); func() bool { n, _ := c.Read(b); return n != 1 || b[0] != 'p' }() {
		t.Fatal("the peeked byte was not left for the read")
	}
	a, b := newMemConnPair(nil, nil)
	if rawsock.Wrap(a) != net.Conn(a) {
		t.Fatal("rawsock.Wrap wrapped a memConn")
	}
	b.Close()
}

// TestResolverGetsTheAcceptedConn: Config.Resolver is handed the connection
// as the listener made it, a *net.TCPConn (iptables capture reads
// SO_ORIGINAL_DST from it, bench/cmd/iptproxy); the sock comes after.
func TestResolverGetsTheAcceptedConn(t *testing.T) {
	appAddr := sloppyApp(t, "")
	var got string
	p, err := New(Config{Direction: Inbound, Resolver: ResolverFunc(func(c net.Conn) (netip.AddrPort, error) {
		if _, ok := c.(*net.TCPConn); !ok {
			return netip.AddrPort{}, fmt.Errorf("resolver got a %T", c)
		}
		return appAddr.AddrPort(), nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	ln := start(t, p)
	res, err := http.Get("http://" + ln.Addr().String() + "/own")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if got = string(b); got != "own" {
		t.Fatalf("through the proxy: %q, want \"own\"", got)
	}
}
