package exporter

import (
	"log/slog"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// quiet is the logger for tests that do not look at logs.
var quiet = slog.New(slog.DiscardHandler)

func podResource(service, pod string) *spans.Resource {
	return &spans.Resource{Attrs: []spans.Attr{
		spans.String("service.name", service),
		spans.String("k8s.pod.name", pod),
		spans.String("k8s.namespace.name", "shop"),
		spans.String("k8s.node.name", "node-1"),
		spans.String("k8s.pod.uid", "uid-"+pod),
	}}
}

// hop returns the four spans the proxy records for one request from pod A to pod B,
// parented as docs/proxy.md says, in the order the legs finish.
func hop(a, b *spans.Resource, start time.Time, status int64) []*spans.Span {
	trace := spans.NewTraceID()
	ids := [4]spans.SpanID{spans.NewSpanID(), spans.NewSpanID(), spans.NewSpanID(), spans.NewSpanID()}
	mk := func(leg spans.Leg, i int, parent spans.SpanID, res *spans.Resource) *spans.Span {
		off := time.Duration(i) * time.Millisecond
		s := &spans.Span{
			TraceID:    trace,
			SpanID:     ids[i],
			ParentID:   parent,
			TraceState: "vendor=x",
			Flags:      1,
			Name:       "GET /users/{id}",
			Kind:       leg.Kind(),
			Start:      start.Add(off),
			End:        start.Add(20*time.Millisecond - off),
			Attrs: []spans.Attr{
				spans.String("http.request.method", "GET"),
				spans.String("url.path", "/users/42"),
				spans.String("server.address", "b.shop.svc"),
				spans.Int("http.response.status_code", status),
				spans.String("hoptrace.leg", leg.String()),
				spans.Bool("hoptrace.sampled", true),
				spans.Float("hoptrace.sample_rate", 0.25),
			},
			Events: []spans.Event{
				{Name: "wire send", Time: start.Add(off + time.Millisecond), Attrs: []spans.Attr{spans.Int("bytes", 120)}},
				{Name: "first response byte", Time: start.Add(10 * time.Millisecond)},
			},
			Resource: res,
		}
		if status >= 500 {
			s.Status, s.StatusMessage = spans.StatusError, "upstream answered 503"
		}
		return s
	}
	server := mk(spans.OutboundServer, 0, spans.SpanID{}, a)
	client := mk(spans.OutboundClient, 1, ids[0], a)
	inServer := mk(spans.InboundServer, 2, ids[1], b)
	inClient := mk(spans.InboundClient, 3, ids[2], b)
	return []*spans.Span{inClient, inServer, client, server}
}

// hops returns n hops between a and b, flattened.
func hops(n int, a, b *spans.Resource) []*spans.Span {
	out := make([]*spans.Span, 0, 4*n)
	now := time.Now()
	for i := range n {
		out = append(out, hop(a, b, now.Add(time.Duration(i)*time.Microsecond), 200)...)
	}
	return out
}
