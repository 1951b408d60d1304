package proxy

import (
	"bufio"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// BenchmarkHeadPath measures the header work one proxy does per HTTP/1
// request, without sockets: parse the request head, frame it, make the
// sampling decision and inject the context, write the head upstream, then
// parse, frame and write the response head. "outbound" is a request that came
// without trace headers (the app's own), "inbound" one that carries the
// traceparent the outbound hop wrote. Run:
//
//	go test ./proxy -run '^$' -bench HeadPath -benchmem -count 6
func BenchmarkHeadPath(b *testing.B) {
	const res = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Sat, 05 Dec 2026 13:00:00 GMT\r\nContent-Length: 2\r\n\r\n"
	const req = "GET /echo?size=2 HTTP/1.1\r\nHost: svc-b.test:8080\r\nUser-Agent: fortio.org/fortio-1.69.0\r\nAccept: */*\r\n"
	b.Run("outbound", func(b *testing.B) { benchmarkHeadPath(b, req+"\r\n", res) })
	b.Run("inbound", func(b *testing.B) {
		benchmarkHeadPath(b, req+"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n", res)
	})
}

func benchmarkHeadPath(b *testing.B, rawReq, rawRes string) {
	p, err := New(Config{
		Direction: Outbound,
		Resolver:  fixedResolver(netip.MustParseAddrPort("10.0.0.2:8080")),
		Recorder:  &discard{noBuild: true},
		Sampler:   spans.NewSampler(1),
		Resource:  &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", "web")}},
	})
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(io.Discard)
	var req, res head
	var l legs
	b.ReportAllocs()
	for b.Loop() {
		if err := req.parseRequest(rawReq); err != nil {
			b.Fatal(err)
		}
		body, err := req.requestFraming()
		if err != nil {
			b.Fatal(err)
		}
		co := req.connection()
		_ = hasToken(req.values(nil, "Expect"), "100-continue") || wantsUpgrade(req.values(nil, "Upgrade"))
		info := RequestInfo{Protocol: ProtocolHTTP1, Version: "1.1", Method: req.method}
		info.Path, info.Query = splitTarget(req.target)
		info.Host, info.UserAgent = req.value("Host"), req.value("User-Agent")
		p.tr.begin(&l, info, req.legs.h, time.Time{})
		_ = idempotent(&req)
		writeRequestHead(w, &req, body, co.upgrade, "10.0.0.2:8080")
		if err := res.parseResponse(rawRes); err != nil {
			b.Fatal(err)
		}
		out, err := res.responseFraming(req.method)
		if err != nil {
			b.Fatal(err)
		}
		res.connection()
		l.response(res.status, res.legs.h)
		writeResponseHead(w, &res, out, true, 1, req.method)
		w.Reset(io.Discard)
	}
	if !l.sampled {
		b.Fatal("not sampled")
	}
}
