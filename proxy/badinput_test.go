package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingApp counts the requests that reach it: bad input must not.
func countingApp(t *testing.T) (*atomic.Int64, *chain) {
	t.Helper()
	var n atomic.Int64
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	return &n, newChain(t, appAddr, func(_ Direction, cfg *Config) {
		cfg.MaxHeaderBytes = 8 << 10
		cfg.HeaderTimeout = 500 * time.Millisecond
	})
}

// sendRaw writes raw bytes to the outbound proxy and returns its response and
// whether the proxy closed the connection after it.
func sendRaw(t *testing.T, c *chain, raw string) (*http.Response, bool) {
	t.Helper()
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	return resp, err == io.EOF
}

// Item 4: malformed request lines and header fields get 400 and a closed
// connection; none reaches the app.
func TestMalformedRequests(t *testing.T) {
	n, c := countingApp(t)
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"no version", "GET /\r\n\r\n", 400},
		{"extra field in request line", "GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400},
		{"double space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"control byte in target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad percent-escape in target", "GET /a%0Xb HTTP/1.1\r\nHost: x\r\n\r\n", 400}, // found by FuzzRequestHead
		{"truncated percent-escape", "GET /a%4 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"bad version", "GET / HTTP/1.x\r\nHost: x\r\n\r\n", 400},
		{"http/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"space before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-Bad : y\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: x\r\nX-Bad\r\n\r\n", 400},
		{"empty name", "GET / HTTP/1.1\r\nHost: x\r\n: y\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"nul in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n", 400},
		{"bare cr in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"non-numeric content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400},
		{"negative content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"differing content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, closed := sendRaw(t, c, tc.raw)
			if resp.StatusCode != tc.status || !closed {
				t.Errorf("status %d closed=%v, want %d and closed", resp.StatusCode, closed, tc.status)
			}
		})
	}
	if got := n.Load(); got != 0 {
		t.Errorf("the app got %d bad requests", got)
	}
	// A bad chunk is found only as the body streams, after the head went
	// upstream: the client still gets 400 and the connection ends.
	resp, closed := sendRaw(t, c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
	if resp.StatusCode != 400 || !closed {
		t.Errorf("bad chunk: status %d closed=%v", resp.StatusCode, closed)
	}
}

// Item 4: request smuggling. Content-Length with Transfer-Encoding, and codings
// that are not exactly chunked, are refused before anything goes upstream.
func TestSmugglingRefused(t *testing.T) {
	n, c := countingApp(t)
	smuggled := "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"CL.TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE.CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", 400},
		{"TE obfuscated", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\nabcd", 400},
		{"TE not last", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400},
		{"TE unsupported", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"TE twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"TE with space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\nabcd", 400},
		{"chunk with bare LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400},
		{"chunk data too long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, closed := sendRaw(t, c, tc.raw)
			if resp.StatusCode != tc.status || !closed {
				t.Errorf("status %d closed=%v, want %d and closed", resp.StatusCode, closed, tc.status)
			}
		})
	}
	// A chunked body that is malformed is found only while it streams: the app
	// may have seen the head, but never a second request.
	if got := n.Load(); got > 2 {
		t.Errorf("the app got %d requests", got)
	}
}

// Item 4: a head over the limit gets 431.
func TestHeadersTooLarge(t *testing.T) {
	n, c := countingApp(t)
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9<<10) + "\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Many: header\r\n", 1000) + "\r\n",
		"GET /" + strings.Repeat("a", 9<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		resp, closed := sendRaw(t, c, raw)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !closed {
			t.Errorf("status %d closed=%v, want 431 and closed", resp.StatusCode, closed)
		}
	}
	if got := n.Load(); got != 0 {
		t.Errorf("the app got %d requests", got)
	}
	// Just under the limit is fine.
	resp, _ := sendRaw(t, c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "+strings.Repeat("a", 7<<10)+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("a head under the limit got %d", resp.StatusCode)
	}
}

// Item 4: a slowloris client trickling its head is cut off at the header
// timeout, while other clients go on unaffected.
func TestSlowlorisCutOff(t *testing.T) {
	_, c := countingApp(t) // header timeout 500ms
	const attackers = 20
	var wg sync.WaitGroup
	cut := make(chan time.Duration, attackers)
	for range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", c.outLn.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			start := time.Now()
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n")
			go func() {
				for i := 0; ; i++ {
					time.Sleep(50 * time.Millisecond)
					if _, err := io.WriteString(conn, "X-Slow: "+strings.Repeat("z", i%5)+"\r\n"); err != nil {
						return
					}
				}
			}()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil && resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("slowloris got %d", resp.StatusCode)
			}
			cut <- time.Since(start)
		}()
	}
	// Meanwhile a well-behaved client sees normal service.
	client := c.client()
	deadline := time.Now().Add(400 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		start := time.Now()
		resp := get(t, client, "http://svc-b.test/", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("good request %d: %d", i, resp.StatusCode)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("good request %d took %v", i, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	close(cut)
	for d := range cut {
		if d < 400*time.Millisecond || d > 2*time.Second {
			t.Errorf("slowloris connection cut after %v, want about the 500ms header timeout", d)
		}
	}
}

// An idle keep-alive connection is closed after the idle timeout.
func TestIdleTimeout(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) { cfg.IdleTimeout = 200 * time.Millisecond })
	conn := c.dial(t)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read %v, want EOF", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("closed after %v", d)
	}
}

// A connection kept busy longer than the idle timeout stays open (its idle
// deadline moves with the requests, if not on every one), and is closed once
// it idles for about the timeout after the last.
func TestIdleTimeoutFollowsRequests(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	const idle = 200 * time.Millisecond
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) { cfg.IdleTimeout = idle })
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	begin := time.Now()
	var start time.Time // the last response read
	for i := 0; time.Since(begin) < 3*idle; i++ {
		if i > 0 {
			time.Sleep(idle / 10)
		}
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d, %v into the connection: %v", i, time.Since(begin), err)
		}
		io.Copy(io.Discard, res.Body)
		// Taken here, not after a pause: the idle time runs from the last
		// response (a pause here once made the close look 20 ms early).
		start = time.Now()
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read %v, want EOF", err)
	}
	if d := time.Since(start); d < idle*(idleSlack-1)/idleSlack-10*time.Millisecond || d > 2*time.Second {
		t.Errorf("closed %v after the last response, want about %v", d, idle)
	}
}

// deadlineConn counts the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	sets []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.sets = append(c.sets, t)
	return nil
}

// The idle deadline is moved only once it lags by a sixteenth of the timeout:
// not a timer update on every request of a busy connection.
func TestAwaitIdleMovesTheDeadlineRarely(t *testing.T) {
	dc := &deadlineConn{}
	hc := &h1Conn{p: &Proxy{cfg: Config{IdleTimeout: 16 * time.Second}}, conn: dc}
	t0 := time.Now()
	hc.awaitIdle(t0)
	for ms := range 1000 { // a request every millisecond for a second
		hc.awaitIdle(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	if len(dc.sets) != 1 || !dc.sets[0].Equal(t0.Add(16*time.Second)) {
		t.Fatalf("deadlines set %v, want one at +16s", dc.sets)
	}
	hc.awaitIdle(t0.Add(1001 * time.Millisecond)) // now lagging by more than 1s
	if len(dc.sets) != 2 || !dc.sets[1].Equal(t0.Add(17001*time.Millisecond)) {
		t.Fatalf("deadlines set %v, want a second at +17.001s", dc.sets)
	}
	hc.setReadDeadline(time.Time{}) // a body cleared it
	hc.awaitIdle(t0.Add(1002 * time.Millisecond))
	if len(dc.sets) != 4 || !dc.sets[3].Equal(t0.Add(17002*time.Millisecond)) {
		t.Fatalf("deadlines set %v, want the idle deadline back after a clear", dc.sets)
	}
}

// On a kept-alive connection the timers follow the request: a second head
// that trickles in is cut at the header timeout (not the longer idle timeout),
// and a body that takes longer than the idle timeout to arrive is read whole
// (a head that came whole arms no header timer; the idle deadline must not
// outlive it into the body).
func TestKeptAliveTimeouts(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) {
		cfg.IdleTimeout = 300 * time.Millisecond
		cfg.HeaderTimeout = 200 * time.Millisecond
	})
	dial := func() (net.Conn, *bufio.Reader) {
		conn := c.dial(t)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		return conn, br
	}

	t.Run("slow body", func(t *testing.T) {
		conn, br := dial()
		io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
		for _, part := range []string{"ab", "cd", "ef"} {
			time.Sleep(200 * time.Millisecond) // 600 ms in all: twice the idle timeout
			io.WriteString(conn, part)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "abcdef" {
			t.Errorf("slow body: %d %q", resp.StatusCode, b)
		}
	})
	t.Run("trickling second head", func(t *testing.T) {
		conn, br := dial()
		start := time.Now()
		io.WriteString(conn, "GET / HTTP/1.1\r\n")
		go func() {
			for range 10 {
				time.Sleep(50 * time.Millisecond)
				if _, err := io.WriteString(conn, "X-A: b\r\n"); err != nil {
					return
				}
			}
		}()
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("trickling head: %v %v, want 408", resp, err)
		}
		if d := time.Since(start); d > 280*time.Millisecond {
			t.Errorf("cut after %v: the idle timeout (300ms), not the header timeout (200ms)", d)
		}
	})
}
