package proxy

import (
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/hoptrace/hoptrace/spans"
)

// A burst of traced requests fills the export queue with span records, and
// their size is what tracing adds to the agent's peak memory (1,000
// connections opening at once: thousands of records queued). A record must
// stay within Go's 3 KiB size class; it used to take 4 KiB, two spans with 24
// attributes reserved each.
func TestLegSpansSize(t *testing.T) {
	if got := unsafe.Sizeof(spans.Attr{}); got > 56 {
		t.Errorf("spans.Attr is %d bytes, want <= 56", got)
	}
	if got := unsafe.Sizeof(legSpans{}); got > 3072 {
		t.Errorf("legSpans is %d bytes, want <= 3072 (Go's 3 KiB size class)", got)
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
	ss := rec.all()
	if len(ss) != 2 {
		t.Fatalf("recorded %d spans, want 2", len(ss))
	}
	m := byLeg(t, ss)
	return m["outbound-server"], m["outbound-client"]
}

// The two spans share their record's attributes: the client's must never
// overwrite the server's, whether the server's fit in the record or outgrew
// it (many captured headers), and neither span may lose one.
func TestLegSpansShareAttributes(t *testing.T) {
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
			if len(srv.Attrs) != 13+2*headers || len(cli.Attrs) != 11+2*headers {
				t.Errorf("attributes: server %d, client %d; want %d and %d", len(srv.Attrs), len(cli.Attrs), 13+2*headers, 11+2*headers)
			}
		})
	}
}

// The record has room for both spans of a gRPC request, the largest without
// captured headers, so recording one allocates no attribute slice.
func TestLegSpansGRPCFits(t *testing.T) {
	info := RequestInfo{
		Protocol: ProtocolGRPC, Version: "2", Method: "POST", Path: "/pkg.Echo/Say", Host: "svc-b.test:8079",
		UserAgent: "grpc-go/1.70.0", Peer: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:8079"),
	}
	req := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	srv, cli := recordOne(t, nil, info, req, http.Header{"Grpc-Status": {"0"}})
	for _, s := range []*spans.Span{srv, cli} {
		if attr(s, "rpc.method") != "Say" || attr(s, "rpc.grpc.status_code") != "0" {
			t.Errorf("%s: %v", attr(s, "hoptrace.leg"), s.Attrs)
		}
	}
	if n := len(srv.Attrs) + len(cli.Attrs); n > legAttrs {
		t.Errorf("a gRPC request's spans have %d attributes, the record room for %d", n, legAttrs)
	}
	if &cli.Attrs[0] != &srv.Attrs[:cap(srv.Attrs)][len(srv.Attrs)] {
		t.Errorf("the client span's attributes are not in the record after the server's")
	}
}
