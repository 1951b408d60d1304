package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
)

// pair is a MultiListener of two listeners whose own Accept must not be
// used: Serve accepts from each directly.
type pair struct {
	a, b net.Listener
	t    *testing.T
}

func (p pair) Accept() (net.Conn, error) {
	p.t.Error("Serve called the MultiListener's own Accept")
	return nil, errors.New("not to be called")
}
func (p pair) Close() error              { return errors.Join(p.a.Close(), p.b.Close()) }
func (p pair) Addr() net.Addr            { return p.a.Addr() }
func (p pair) Listeners() []net.Listener { return []net.Listener{p.a, p.b} }

// TestServeAcceptsFromEachListener: requests through either listener of a
// MultiListener are served, and Close ends Serve with ErrClosed (serveOn).
func TestServeAcceptsFromEachListener(t *testing.T) {
	appAddr := sloppyApp(t, "")
	p, err := New(Config{Direction: Inbound, Resolver: fixedResolver(appAddr.AddrPort())})
	if err != nil {
		t.Fatal(err)
	}
	ml := pair{a: listen(t), b: listen(t), t: t}
	serveOn(t, p, ml)
	for _, ln := range ml.Listeners() {
		res, err := http.Get("http://" + ln.Addr().String() + "/own")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "own" {
			t.Fatalf("through %v: %q, want \"own\"", ln.Addr(), b)
		}
	}
}
