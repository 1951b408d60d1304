package redirect

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
)

func tcpListener(t *testing.T, network, addr string) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("%s %s: %v", network, addr, err)
	}
	return ln.(*net.TCPListener)
}

// TestDualListenerHandsOverItsListeners: proxy.Serve accepts from each of a
// pod's two listeners directly (Listeners), with the accept hook applied, and
// Accept, for any other caller, still merges them.
func TestDualListenerHandsOverItsListeners(t *testing.T) {
	var hooked atomic.Int32
	d := newDualListener(tcpListener(t, "tcp4", "127.0.0.1:0"), tcpListener(t, "tcp6", "[::1]:0"), func(net.Conn) { hooked.Add(1) })
	defer d.Close()
	lns := d.Listeners()
	if len(lns) != 2 {
		t.Fatalf("%d listeners, want 2", len(lns))
	}
	for _, ln := range lns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if a.RemoteAddr().String() != c.LocalAddr().String() {
			t.Fatalf("accepted %v on %v, dialed from %v", a.RemoteAddr(), ln.Addr(), c.LocalAddr())
		}
		a.Close()
		c.Close()
	}
	if hooked.Load() != 2 {
		t.Fatalf("the accept hook saw %d connections, want 2", hooked.Load())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ln := range lns {
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("accept after Close: %v, want net.ErrClosed", err)
		}
	}
}

func TestDualListenerAcceptMerges(t *testing.T) {
	v4, v6 := tcpListener(t, "tcp4", "127.0.0.1:0"), tcpListener(t, "tcp6", "[::1]:0")
	d := newDualListener(v4, v6, nil)
	for _, addr := range []net.Addr{v4.Addr(), v6.Addr()} {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		a, err := d.Accept()
		if err != nil {
			t.Fatal(err)
		}
		a.Close()
		c.Close()
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after Close: %v, want net.ErrClosed", err)
	}
}
