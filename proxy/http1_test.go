package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// patternReader produces n bytes of a repeating pattern without holding them.
type patternReader struct{ n, off int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func patternSum(n int64) string {
	h := sha256.New()
	io.Copy(h, &patternReader{n: n})
	return hex.EncodeToString(h.Sum(nil))
}

// hashHandler answers with the sha256 of the request body and its length.
func hashHandler(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d %x %v", n, h.Sum(nil), r.TransferEncoding)
}

// Item 3: 1,000 sequential requests on one client connection, and the proxies
// reuse one upstream connection for all of them.
func TestKeepAlive1000(t *testing.T) {
	var appConns atomic.Int64
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}), func(s *http.Server) {
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				appConns.Add(1)
			}
		}
	})
	c := newChain(t, appAddr)
	conn := c.dial(t)
	br := bufio.NewReader(conn)
	for i := range 1000 {
		fmt.Fprintf(conn, "GET /r%d HTTP/1.1\r\nHost: svc-b.test\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != fmt.Sprintf("/r%d", i) || resp.Close {
			t.Fatalf("request %d: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
		}
	}
	if n := appConns.Load(); n != 1 {
		t.Errorf("the app saw %d connections, want 1 (upstream reuse)", n)
	}
	_, outFlows := c.outObs.snapshot()
	if len(c.out.Flows()) != 1 || len(outFlows) != 0 {
		t.Fatalf("outbound flows: open %d closed %d, want one open", len(c.out.Flows()), len(outFlows))
	}
	// The last request is counted once its response is out, which the client
	// may see first.
	eventually(t, "1000 requests on the flow", func() bool { return c.out.Flows()[0].Requests == 1000 })
	if f := c.out.Flows()[0]; f.Protocol != ProtocolHTTP1 || f.BytesIn == 0 || f.BytesOut == 0 {
		t.Errorf("outbound flow %+v", f)
	}
}

const bigBody = 50 << 20

// measureAlloc runs f and returns the bytes allocated meanwhile by the whole test
// process: client, proxies and app together.
func measureAlloc(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Item 3: a 50 MB chunked upload is streamed, not buffered.
func TestChunkedUpload50MB(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(hashHandler))
	c := newChain(t, appAddr)
	client := c.client()
	var body string
	alloc := measureAlloc(func() {
		req, _ := http.NewRequest(http.MethodPost, "http://svc-b.test/upload", io.NopCloser(&patternReader{n: bigBody}))
		req.ContentLength = -1 // chunked
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
	})
	want := fmt.Sprintf("%d %s [chunked]", bigBody, patternSum(bigBody))
	if body != want {
		t.Fatalf("app got %q, want %q", body, want)
	}
	// Buffering the body anywhere would allocate at least its size. (Not
	// under the race detector: its sync.Pool drops a share of what is put
	// back, on purpose, so pooled buffers are allocated again.)
	if alloc > 4<<20 && !raceEnabled {
		t.Errorf("allocated %d MB moving a %d MB body", alloc>>20, bigBody>>20)
	}
	t.Logf("allocated %d KB for a %d MB chunked upload through two proxies", alloc>>10, bigBody>>20)
}

// Item 3: a 50 MB Expect: 100-continue upload waits for the app's 100 and is
// streamed.
func TestExpectContinueUpload50MB(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(hashHandler))
	c := newChain(t, appAddr)
	tr := c.transport()
	tr.ExpectContinueTimeout = 10 * time.Second // long: the 100 must come from the app
	client := &http.Client{Transport: tr}
	var got100 atomic.Bool
	var body string
	alloc := measureAlloc(func() {
		req, _ := http.NewRequest(http.MethodPut, "http://svc-b.test/upload", &patternReader{n: bigBody})
		req.ContentLength = bigBody
		req.Header.Set("Expect", "100-continue")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got100Continue: func() { got100.Store(true) },
		}))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if time.Since(start) > 9*time.Second {
			t.Error("the client waited out its expect timeout: no 100 came through")
		}
	})
	if !got100.Load() {
		t.Error("client never got 100 Continue")
	}
	want := fmt.Sprintf("%d %s []", bigBody, patternSum(bigBody))
	if body != want {
		t.Fatalf("app got %q, want %q", body, want)
	}
	if alloc > 4<<20 && !raceEnabled { // see TestChunkedUpload50MB
		t.Errorf("allocated %d MB moving a %d MB body", alloc>>20, bigBody>>20)
	}
	t.Logf("allocated %d KB for a %d MB upload through two proxies", alloc>>10, bigBody>>20)
}

// A refused 100-continue: the app answers without reading, the client never
// sends its body, and nobody hangs.
func TestExpectContinueRefused(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too big", http.StatusRequestEntityTooLarge)
	}))
	c := newChain(t, appAddr)
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "PUT /upload HTTP/1.1\r\nHost: svc-b.test\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// A response streamed by the app reaches the client piece by piece.
func TestStreamingResponse(t *testing.T) {
	step := make(chan struct{})
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "event %d\n", i)
			w.(http.Flusher).Flush()
			<-step
		}
	}))
	c := newChain(t, appAddr)
	resp, err := c.client().Get("http://svc-b.test/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("event %d\n", i) {
			t.Fatalf("line %d: %q %v", i, line, err)
		}
		step <- struct{}{} // the app writes the next only now
	}
}

// A streaming upload with a streaming reply: the app echoes as it reads, which
// deadlocks any proxy that sends the whole request before reading the response.
func TestFullDuplexEcho(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		buf := make([]byte, 1024)
		for {
			n, err := r.Body.Read(buf)
			w.Write(buf[:n])
			w.(http.Flusher).Flush()
			if err != nil {
				return
			}
		}
	}))
	c := newChain(t, appAddr)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, "http://svc-b.test/echo", pr)
	resp, err := c.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 5 {
		msg := fmt.Sprintf("ping %d\n", i)
		io.WriteString(pw, msg)
		line, err := br.ReadString('\n')
		if err != nil || line != msg {
			t.Fatalf("echo %d: %q %v", i, line, err)
		}
	}
	pw.Close()
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// Item 3: WebSocket echo through both proxies.
func TestWebSocketEcho(t *testing.T) {
	up := websocket.Upgrader{}
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			mt, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if err := ws.WriteMessage(mt, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	c := newChain(t, appAddr)
	d := websocket.Dialer{NetDialContext: c.transport().DialContext}
	ws, resp, err := d.Dial("ws://svc-b.test/ws", http.Header{"Traceparent": {"00-" + incomingTrace + "-" + incomingSpan + "-01"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for i := range 10 {
		msg := strings.Repeat(fmt.Sprint(i), 1+i*1000)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := ws.ReadMessage()
		if err != nil || string(got) != "echo: "+msg {
			t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
		}
	}
	// The upgrade request itself is traced.
	legs := checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
	if got := attr(legs["inbound-server"], "http.response.status_code"); got != "101" {
		t.Errorf("status_code %q", got)
	}
	if f := c.out.Flows(); len(f) != 1 || f[0].Protocol != ProtocolWebSocket {
		t.Errorf("outbound flows %+v", f)
	}
}

// An HTTP/1.0 client gets a response it can read, delimited by close.
func TestHTTP10Client(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush() // forces chunked towards the proxy
		io.WriteString(w, "old but gold")
	}))
	c := newChain(t, appAddr)
	conn := c.dial(t)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /old HTTP/1.0\r\n\r\n")
	all, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	s := string(all)
	if !strings.HasPrefix(s, "HTTP/1.1 200") || !strings.HasSuffix(s, "\r\n\r\nold but gold") || strings.Contains(s, "chunked") {
		t.Errorf("response %q", s)
	}
}

// rawApp is an upstream that answers every request with a fixed response, for
// framing the net/http server would not produce.
func rawApp(t *testing.T, response string, closeAfter bool) *net.TCPAddr {
	t.Helper()
	return rawAppFunc(t, func(*http.Request) string { return response }, closeAfter)
}

// rawAppFunc is rawApp with a response chosen per request.
func rawAppFunc(t *testing.T, respond func(*http.Request) string, closeAfter bool) *net.TCPAddr {
	t.Helper()
	return net.TCPAddrFromAddrPort(tcpApp(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, respond(req))
			if closeAfter {
				return
			}
		}
	}))
}

// A response delimited by close reaches an HTTP/1.1 client chunked, and the
// client keeps its connection.
func TestResponseUntilClose(t *testing.T) {
	addr := rawApp(t, "HTTP/1.1 200 OK\r\nX-Kind: eof\r\n\r\nbody until close", true)
	c := newChain(t, addr.AddrPort())
	conn := c.dial(t)
	br := bufio.NewReader(conn)
	for range 2 {
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "body until close" || resp.Close || len(resp.TransferEncoding) == 0 || resp.Header.Get("X-Kind") != "eof" {
			t.Errorf("got %q close=%v te=%v", b, resp.Close, resp.TransferEncoding)
		}
	}
}

// Chunked trailers pass through both proxies.
func TestChunkedTrailers(t *testing.T) {
	addr := rawApp(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n", false)
	c := newChain(t, addr.AddrPort())
	resp, err := c.client().Get("http://svc-b.test/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" || resp.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("body %q trailer %v", b, resp.Trailer)
	}
}

// Hop-by-hop fields, including those the Connection header names, stop at the
// proxy; framing and host survive a Connection header that names them.
func TestHopByHopRemoved(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	c := newChain(t, appAddr)
	conn := c.dial(t)
	io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: svc-b.test\r\nConnection: keep-alive, X-Hop, Content-Length, Host\r\n"+
		"X-Hop: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-End: kept\r\nContent-Length: 4\r\n\r\nbody")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := seen.last(t)
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Te", "Connection"} {
		if v, ok := h[k]; ok {
			t.Errorf("app got hop-by-hop %s: %q", k, v)
		}
	}
	if h.Get("X-End") != "kept" {
		t.Errorf("end-to-end header lost: %v", h)
	}
}

// A pooled connection the upstream closed while idle is noticed, and the next
// request goes out on a fresh one.
func TestStaleUpstreamConnection(t *testing.T) {
	srv, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	c := newChain(t, appAddr)
	client := c.client()
	for i := range 5 {
		resp := get(t, client, "http://svc-b.test/", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		// Drops the app's idle connections, which the inbound proxy pooled.
		srv.CloseClientConnections()
		time.Sleep(10 * time.Millisecond)
	}
}

// Pipelined requests are answered in order.
func TestPipelining(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	c := newChain(t, appAddr)
	conn := c.dial(t)
	var reqs bytes.Buffer
	for i := range 20 {
		fmt.Fprintf(&reqs, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	conn.Write(reqs.Bytes())
	br := bufio.NewReader(conn)
	for i := range 20 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != fmt.Sprintf("/p%d", i) {
			t.Fatalf("response %d: %q", i, b)
		}
	}
}

// HEAD responses keep their Content-Length and have no body.
func TestHeadRequest(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
	}))
	c := newChain(t, appAddr)
	conn := c.dial(t)
	br := bufio.NewReader(conn)
	for range 2 {
		io.WriteString(conn, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
		if err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength != 1234 {
			t.Errorf("content-length %d", resp.ContentLength)
		}
	}
}

// Upstream connections are reused per destination across client connections.
func TestUpstreamReuseAcrossClients(t *testing.T) {
	var appConns atomic.Int64
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(s *http.Server) {
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				appConns.Add(1)
			}
		}
	})
	c := newChain(t, appAddr)
	for range 5 {
		tr := c.transport()
		get(t, &http.Client{Transport: tr}, "http://svc-b.test/", nil)
		tr.CloseIdleConnections()
	}
	if n := appConns.Load(); n != 1 {
		t.Errorf("the app saw %d connections for 5 client connections, want 1", n)
	}
}
