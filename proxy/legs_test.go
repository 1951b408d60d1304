package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/hoptrace/hoptrace/spans"
)

// A burst of traced requests fills the export queue with span records, and
// their size is what tracing adds to the agent's peak memory (1,000
// connections opening at once: thousands of records queued). Deferred, a
// request's record is what its legs knew, not its two built spans: it must
// stay within Go's 1,280-byte size class (built, the spans took 3 KiB, and 4
// KiB before that).
func TestLegSpansSize(t *testing.T) {
	if got := unsafe.Sizeof(spans.Attr{}); got > 56 {
		t.Errorf("spans.Attr is %d bytes, want <= 56", got)
	}
	if got := unsafe.Sizeof(legSpans{}); got > 1280 {
		t.Errorf("legSpans is %d bytes, want <= 1280 (a Go size class)", got)
	}
}

// recordOne runs one sampled request through a proxy's legs, as http1.go
// does, and returns the two spans it recorded.
func recordOne(t *testing.T, capture []string, info RequestInfo, reqHeader, respHeader http.Header) (server, client *spans.Span) {
	t.Helper()
	rec := &recorder{}
	p, err := New(Config{
		Direction:      Outbound,
		Resolver:       fixedResolver(info.Dst),
		Recorder:       rec,
		Sampler:        spans.NewSampler(1),
		Resource:       &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", "web")}},
		CaptureHeaders: capture,
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var l legs
	p.tr.begin(&l, info, reqHeader, now)
	l.dialStart, l.cliStart, l.sent, l.firstByte, l.cliEnd, l.respHeader = now, now, now, now, now, now
	l.response(200, respHeader)
	l.finish(now, &flow{})
	// The connection goes on to its next request, reusing the legs (and
	// their captured headers' slices) before the exporter builds the spans.
	next := http.Header{"Traceparent": {"00-11111111111111111111111111111111-2222222222222222-01"}}
	for _, c := range capture {
		next[http.CanonicalHeaderKey(c)] = []string{"next-request"}
	}
	p.tr.begin(&l, RequestInfo{Protocol: ProtocolHTTP1, Version: "1.1", Method: "PUT", Path: "/next"}, next, now)
	l.response(500, next)
	ss := rec.all()
	if len(ss) != 2 {
		t.Fatalf("recorded %d spans, want 2", len(ss))
	}
	m := byLeg(t, ss)
	return m["outbound-server"], m["outbound-client"]
}

// Both spans carry every captured header, however many, and what the request
// carried: the record keeps copies of what the connection reuses for its next
// request (recordOne starts one before the spans are built).
func TestLegSpansCapturedHeaders(t *testing.T) {
	info := RequestInfo{
		Protocol: ProtocolHTTP1, Version: "1.1", Method: "GET", Path: "/users/42", Host: "svc-b.test:8080",
		UserAgent: "curl/8.5.0", Peer: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:8080"),
	}
	for _, headers := range []int{0, 1, 6, 7, 20} {
		t.Run(strconv.Itoa(headers)+"-captured", func(t *testing.T) {
			var capture []string
			req := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
			resp := http.Header{}
			for i := range headers {
				name := "X-H" + strconv.Itoa(i)
				capture = append(capture, name)
				req[name] = []string{"req-" + strconv.Itoa(i)}
				resp[name] = []string{"resp-" + strconv.Itoa(i)}
			}
			srv, cli := recordOne(t, capture, info, req, resp)
			for _, s := range []*spans.Span{srv, cli} {
				for i := range headers {
					if got := attr(s, "http.request.header.x-h"+strconv.Itoa(i)); got != "req-"+strconv.Itoa(i) {
						t.Errorf("%s: request header %d = %q", attr(s, "hoptrace.leg"), i, got)
					}
					if got := attr(s, "http.response.header.x-h"+strconv.Itoa(i)); got != "resp-"+strconv.Itoa(i) {
						t.Errorf("%s: response header %d = %q", attr(s, "hoptrace.leg"), i, got)
					}
				}
			}
			if got := attr(srv, "hoptrace.leg"); got != "outbound-server" || attr(srv, "url.path") != "/users/42" ||
				attr(srv, "client.address") == "" || hasAttr(srv, "url.full") {
				t.Errorf("server span attributes overwritten: %v", srv.Attrs)
			}
			if attr(cli, "url.full") != "http://svc-b.test:8080/users/42" || hasAttr(cli, "url.path") {
				t.Errorf("client span attributes wrong: %v", cli.Attrs)
			}
			if len(srv.Attrs) != 12+2*headers || len(cli.Attrs) != 9+2*headers {
				t.Errorf("attributes: server %d, client %d; want %d and %d", len(srv.Attrs), len(cli.Attrs), 12+2*headers, 9+2*headers)
			}
		})
	}
}

// A gRPC request's spans are named service/method and carry the RPC's
// attributes.
func TestLegSpansGRPC(t *testing.T) {
	info := RequestInfo{
		Protocol: ProtocolGRPC, Version: "2", Method: "POST", Path: "/pkg.Echo/Say", Host: "svc-b.test:8079",
		UserAgent: "grpc-go/1.70.0", Peer: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:8079"),
	}
	req := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	srv, cli := recordOne(t, nil, info, req, http.Header{"Grpc-Status": {"0"}})
	for _, s := range []*spans.Span{srv, cli} {
		if s.Name != "pkg.Echo/Say" || attr(s, "rpc.service") != "pkg.Echo" || attr(s, "rpc.method") != "Say" ||
			attr(s, "rpc.grpc.status_code") != "0" {
			t.Errorf("%s %q: %v", attr(s, "hoptrace.leg"), s.Name, s.Attrs)
		}
	}
}

// Recording a traced request's spans runs at the deepest point of its
// connection's goroutine. Over 4 KiB of stack there, and every connection that
// carries a traced request doubles its goroutine's stack to 8 KiB, where it
// stays until a collection shrinks it: with 1,000 connections, 4 MB more. The
// span builders used to need 3.5 KiB of frames on their own (composite
// literals and multi-value appends of 64-byte attributes built on the stack).
// Collections are off while the connections are served, so no stack shrinks,
// and the test runs itself again with GODEBUG=adaptivestackstart=0, so that
// every goroutine starts at the minimum stack and the number says what the
// requests needed, not what earlier tests' goroutines averaged.
func TestTracedRequestStackStaysSmall(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation grows every stack")
	}
	const conns = 300
	if !strings.Contains(os.Getenv("GODEBUG"), "adaptivestackstart=0") {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTracedRequestStackStaysSmall$", "-test.v")
		cmd.Env = append(os.Environ(), "GODEBUG=adaptivestackstart=0")
		out, err := cmd.CombinedOutput()
		t.Logf("%s", out)
		if err != nil {
			t.Fatalf("with GODEBUG=adaptivestackstart=0: %v", err)
		}
		return
	}
	perConn := func(rate float64) int64 {
		c := newChain(t, okApp(t).AddrPort(), func(_ Direction, cfg *Config) {
			cfg.Recorder = &discard{}
			cfg.Sampler = spans.NewSampler(rate)
		})
		addr := c.outLn.Addr().String()
		req := "GET /users/42 HTTP/1.1\r\nHost: svc-b.test\r\nUser-Agent: fortio.org/fortio-1.63.0\r\n\r\n"
		// One request first, so the hop between the proxies is pooled
		// and the connections below are the only new goroutines.
		cn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, cn, req)
		cn.Close()
		runtime.GC()
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		open := make([]net.Conn, 0, conns)
		defer func() {
			for _, cn := range open {
				cn.Close()
			}
		}()
		for range conns {
			cn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, cn)
			roundTrip(t, cn, req)
		}
		runtime.ReadMemStats(&after)
		return (int64(after.StackInuse) - int64(before.StackInuse)) / conns
	}
	untraced, traced := perConn(0), perConn(1)
	t.Logf("goroutine stack per connection after one request: %d B untraced, %d B traced", untraced, traced)
	if traced > 6<<10 {
		t.Errorf("a connection that carried a traced request holds %d B of stack, want < 6 KiB (4 KiB stacks; untraced: %d B)", traced, untraced)
	}
}

// spans.Span.ASCII lets the exporter skip checking strings for UTF-8: a span
// may carry it only when every attribute and event string is ASCII, so a
// request with a byte above 0x7f in any of them, wherever it came from, must
// leave it unset; an all-ASCII request sets it on both spans.
func TestLegSpansASCII(t *testing.T) {
	base := RequestInfo{
		Protocol: ProtocolHTTP1, Version: "1.1", Method: "GET", Path: "/users/42", Query: "q=1", Host: "svc-b.test:8080",
		UserAgent: "curl/8.5.0", Peer: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:8080"),
	}
	header := func() http.Header {
		return http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			"Tracestate": {"vendor=ok"}, "X-Tenant": {"acme"}}
	}
	allASCII := func(s *spans.Span) bool {
		for _, a := range s.Attrs {
			if !spans.IsASCII(a.Key) || !spans.IsASCII(a.Str) {
				return false
			}
		}
		for _, e := range s.Events {
			if !spans.IsASCII(e.Name) {
				return false
			}
		}
		return true
	}
	const bad = "\xc3\xa9" // é, valid UTF-8 and not ASCII
	for _, tt := range []struct {
		name    string
		capture []string
		info    func(*RequestInfo)
		req     func(http.Header)
		want    bool
	}{
		{name: "ascii", capture: []string{"X-Tenant"}, want: true},
		{name: "method", info: func(i *RequestInfo) { i.Method = "G" + bad }},
		{name: "path", info: func(i *RequestInfo) { i.Path = "/caf" + bad }},
		{name: "query", info: func(i *RequestInfo) { i.Query = "q=" + bad }},
		{name: "host", info: func(i *RequestInfo) { i.Host = "caf" + bad + ".test" }},
		{name: "no host, zoned destination", info: func(i *RequestInfo) {
			i.Host, i.Dst = "", netip.AddrPortFrom(netip.MustParseAddr("fe80::1%caf"+bad), 8080)
		}},
		{name: "user agent", info: func(i *RequestInfo) { i.UserAgent = "agent/" + bad }},
		{name: "captured value", capture: []string{"X-Tenant"}, req: func(h http.Header) { h["X-Tenant"] = []string{bad} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, h := base, header()
			if tt.info != nil {
				tt.info(&info)
			}
			if tt.req != nil {
				tt.req(h)
			}
			server, client := recordOne(t, tt.capture, info, h, http.Header{})
			for _, s := range []*spans.Span{server, client} {
				if s.ASCII != tt.want {
					t.Errorf("%s span: ASCII = %v, want %v", s.Name, s.ASCII, tt.want)
				}
				if s.ASCII && !allASCII(s) {
					t.Errorf("%s span promises ASCII and is not: %+v", s.Name, s.Attrs)
				}
			}
		})
	}
}

// Names no request could carry are refused, by New and by the check the agent
// runs at start; blanks are ignored. (So captured headers' attribute keys are
// ASCII: a span is marked ASCII by its values alone.)
func TestCaptureHeaderNames(t *testing.T) {
	if err := CheckCaptureHeaders([]string{"X-Request-Id", " x-tenant ", ""}); err != nil {
		t.Errorf("good names: %v", err)
	}
	resolver := ResolverFunc(func(net.Conn) (netip.AddrPort, error) { return netip.AddrPort{}, nil })
	for _, bad := range []string{"x request", "x:y", "ten\rant", "café"} {
		err := CheckCaptureHeaders([]string{"x-ok", bad})
		if !errors.Is(err, ErrHeaderName) || !strings.Contains(err.Error(), strconv.Quote(bad)) {
			t.Errorf("%q: %v, want ErrHeaderName naming it", bad, err)
		}
		if _, err := New(Config{Direction: Outbound, Resolver: resolver, CaptureHeaders: []string{bad}}); !errors.Is(err, ErrHeaderName) {
			t.Errorf("New with %q: %v, want ErrHeaderName", bad, err)
		}
	}
}
