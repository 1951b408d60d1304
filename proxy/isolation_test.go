package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// sloppyApp answers HTTP/1.1 on one listener the way a careless server might:
// after the response to /leak it writes leftover bytes shaped like a whole
// response of their own, which must never reach another client.
func sloppyApp(t *testing.T, leak string) *net.TCPAddr {
	t.Helper()
	return rawAppFunc(t, func(req *http.Request) string {
		if req.URL.Path == "/leak" {
			return leak + "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstolen"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nown"
	}, false)
}

// TestPooledUpstreamNeverCarriesLeftovers: a second client on a pooled
// upstream connection gets its own response, never bytes the upstream sent
// beyond the first response (issue 11, response isolation).
func TestPooledUpstreamNeverCarriesLeftovers(t *testing.T) {
	for _, tc := range []struct {
		name, method, leak string
	}{
		{"body on 204", http.MethodGet, "HTTP/1.1 204 No Content\r\n\r\n"},
		{"body on 304", http.MethodGet, "HTTP/1.1 304 Not Modified\r\n\r\n"},
		{"body on HEAD", http.MethodHead, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"},
		{"beyond Content-Length", http.MethodGet, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"beyond Content-Length: 0", http.MethodGet, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			appAddr := sloppyApp(t, tc.leak)
			obs := &observer{}
			p, err := New(Config{Direction: Inbound, Resolver: fixedResolver(appAddr.AddrPort()), Observer: obs})
			if err != nil {
				t.Fatal(err)
			}
			ln := start(t, p)
			get := func(method, path string) (int, string) {
				t.Helper()
				// A new client connection each time: only the upstream is shared.
				c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				req, _ := http.NewRequest(method, "http://"+ln.Addr().String()+path, nil)
				res, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				return res.StatusCode, string(b)
			}
			get(tc.method, "/leak")
			for i := range 3 {
				if code, body := get(http.MethodGet, "/own"); code != 200 || body != "own" {
					t.Fatalf("request %d after the sloppy response got %d %q, want 200 \"own\"", i, code, body)
				}
			}
			eventually(t, "the discarded upstream to be reported", func() bool {
				reqs, _ := obs.snapshot()
				for _, r := range reqs {
					if r.UpstreamDiscarded {
						return strings.HasPrefix(r.Method, tc.method)
					}
				}
				return false
			})
		})
	}
}
