// Package infer links a pod's outbound requests to the inbound request its app
// was serving when it sent them, for apps that forward no trace headers. BPF
// tracing programs on the app's recvmsg/sendmsg say which thread read which
// inbound request and which request a thread's outbound write belongs to; the
// proxies announce requests and ask for parents through proxy.ContextInference.
// Ambiguous cases (threads or processes that interleave requests, Go programs)
// are never linked, only counted. docs/inference.md has the whole argument.
package infer

import (
	"errors"
	"sync/atomic"

	"github.com/hoptrace/hoptrace/spans"
)

// ErrNotSupported says the kernel lacks what inference needs (BTF and the
// tracepoints sock_recv_length and tcp_sendmsg_locked); capture and tracing
// still work.
var ErrNotSupported = errors.New("context inference not supported by this kernel")

// Result is what became of one outbound request without trace context.
type Result uint8

const (
	// Linked: the request continues the inbound request's trace.
	Linked Result = iota + 1
	// Ambiguous: the sending thread or process interleaves requests (event
	// loops, Go): the hop is left unlinked.
	Ambiguous
	// NoData: nothing links the request (its thread read no announced request,
	// or answered it already, or the write began mid-stream).
	NoData
)

func (r Result) String() string {
	switch r {
	case Linked:
		return "linked"
	case Ambiguous:
		return "ambiguous"
	case NoData:
		return "no_data"
	}
	return "invalid"
}

// Stats counts outcomes since the Inferrer opened.
type Stats struct {
	Linked, Ambiguous, NoData uint64
	// Kernel side: inbound requests a thread was seen reading, the times a
	// thread read one while another was unanswered, and outbound writes
	// labelled.
	RequestsRead, Multiplexed, WritesRecorded uint64
}

// Kernel verdicts on an outbound write, as bpf/infer.c sets them.
const (
	verdictLinked    = 1
	verdictNoThread  = 2
	verdictAnswered  = 3
	verdictAmbiguous = 4
)

// resultOf turns a kernel verdict into a Result; goRuntime reports whether the
// writing process is a Go program.
func resultOf(verdict uint32, ctx spans.Context, goRuntime func() bool) Result {
	switch verdict {
	case verdictLinked:
		if !ctx.IsValid() {
			return NoData // the inbound request was not traced (a probe)
		}
		if goRuntime() {
			return Ambiguous
		}
		return Linked
	case verdictAmbiguous:
		return Ambiguous
	}
	return NoData
}

type counters struct {
	linked, ambiguous, noData atomic.Uint64
}

func (c *counters) add(r Result) {
	switch r {
	case Linked:
		c.linked.Add(1)
	case Ambiguous:
		c.ambiguous.Add(1)
	default:
		c.noData.Add(1)
	}
}

// contextOf and traceCtx convert between spans.Context and the kernel's
// trace_ctx (ids and the W3C flags byte).
func contextOf(traceID [16]byte, spanID [8]byte, flags uint8) spans.Context {
	return spans.Context{
		TraceID: spans.TraceID(traceID),
		SpanID:  spans.SpanID(spanID),
		Sampled: flags&spans.FlagSampled != 0,
		Random:  flags&spans.FlagRandom != 0,
	}
}
