package proxy

import (
	"net"
	"net/http"

	"github.com/hoptrace/hoptrace/spans"
)

// ContextInference links a pod's outbound requests that carry no trace context
// to the inbound request its app was serving when it sent them, for apps that
// forward no trace headers (package infer, docs/inference.md).
type ContextInference interface {
	// Sending is called by an inbound proxy just before it writes a request
	// head to its upstream connection c; ctx is the context the app receives
	// (not valid when the request is not traced).
	Sending(c net.Conn, ctx spans.Context)
	// Parent is called by an outbound proxy for a request without any trace
	// header whose head started at byte offset off of client connection c
	// (counted from the connection's first byte). ok says
	// ctx is the context of the inbound request that caused it; every other
	// answer is counted by the implementation and leaves the request alone.
	// A request with no byte offset of its own (an HTTP/2 stream) comes with
	// c nil and off -1: it is counted, never linked.
	Parent(c net.Conn, off int64) (ctx spans.Context, ok bool)
}

// inferParent gives an outbound request without trace context the context the
// app failed to forward, if the kernel saw which inbound request caused it. The
// context goes into h as if the app had sent it, so sampling and propagation
// treat it as theirs. It reports whether it did.
func (p *Proxy) inferParent(c net.Conn, off int64, h http.Header) bool {
	if p.cfg.Infer == nil || p.cfg.Sampler == nil || p.cfg.Direction != Outbound {
		return false
	}
	if got, ok := spans.Extract(h); ok || got.Formats != 0 {
		return false // the app forwarded something: it is the app's to decide
	}
	ctx, ok := p.cfg.Infer.Parent(c, off)
	if !ok {
		return false
	}
	ctx.Formats, ctx.TraceState = 0, ""
	spans.Inject(h, ctx)
	return true
}

// inferNotLinked counts an outbound HTTP/2 request without trace context with
// Config.Infer: streams share a connection, so no byte offset says which write
// of the app was the request, and it is not linked.
func (p *Proxy) inferNotLinked(h http.Header) {
	if p.cfg.Infer == nil || p.cfg.Sampler == nil || p.cfg.Direction != Outbound {
		return
	}
	if got, ok := spans.Extract(h); ok || got.Formats != 0 {
		return
	}
	p.cfg.Infer.Parent(nil, -1)
}

// inferSending announces the request about to be written on u, with the context
// h now carries, to an inbound proxy's ContextInference.
func (p *Proxy) inferSending(u *upstream, h http.Header) {
	if p.cfg.Infer == nil || p.cfg.Direction != Inbound {
		return
	}
	ctx, _ := spans.Extract(h)
	p.cfg.Infer.Sending(u.conn, ctx)
}
