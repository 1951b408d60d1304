package infer

import (
	"testing"

	"github.com/hoptrace/hoptrace/spans"
)

// What each kernel verdict becomes, and that a Go program is never linked.
func TestResultOf(t *testing.T) {
	traced := spans.Context{TraceID: spans.TraceID{1}, SpanID: spans.SpanID{2}, Sampled: true}
	for _, c := range []struct {
		name    string
		verdict uint32
		ctx     spans.Context
		isGo    bool
		want    Result
	}{
		{"linked", verdictLinked, traced, false, Linked},
		{"linked, but a Go program", verdictLinked, traced, true, Ambiguous},
		{"linked to an untraced request (a probe)", verdictLinked, spans.Context{}, false, NoData},
		{"multiplexing thread", verdictAmbiguous, traced, false, Ambiguous},
		{"thread never read a request", verdictNoThread, spans.Context{}, false, NoData},
		{"request answered", verdictAnswered, spans.Context{}, false, NoData},
		{"unknown verdict", 99, traced, false, NoData},
	} {
		if got := resultOf(c.verdict, c.ctx, func() bool { return c.isGo }); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// The kernel's trace_ctx becomes the context the proxy injects.
func TestContextOf(t *testing.T) {
	c := contextOf([16]byte{0xaa}, [8]byte{0xbb}, spans.FlagSampled|spans.FlagRandom)
	if c.TraceID != (spans.TraceID{0xaa}) || c.SpanID != (spans.SpanID{0xbb}) || !c.Sampled || !c.Random {
		t.Errorf("contextOf = %+v", c)
	}
	if c := contextOf([16]byte{1}, [8]byte{1}, 0); c.Sampled || c.Flags() != 0 {
		t.Errorf("unsampled: %+v", c)
	}
}
