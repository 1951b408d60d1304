package spans

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
)

func TestDecide(t *testing.T) {
	sampledParent := http.Header{headerTraceparent: {"00-" + tpTrace + "-" + tpParent + "-01"}}
	unsampledParent := http.Header{headerTraceparent: {"00-" + tpTrace + "-" + tpParent + "-00"}}
	deferredB3 := func() http.Header { return http.Header{headerB3: {b3Trace + "-" + b3Span}} }
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	const (
		keep    = iota // the incoming trace continues
		restart        // a new trace id
	)
	tests := []struct {
		name    string
		rate    float64
		in      http.Header
		trace   int
		sampled bool
		debug   bool
		formats Format
	}{
		{name: "parent sampled, rate 0", rate: 0, in: sampledParent, trace: keep, sampled: true, formats: FormatW3C},
		{name: "parent not sampled, rate 1", rate: 1, in: unsampledParent, trace: keep, sampled: false, formats: FormatW3C},
		{name: "no context, rate 0", rate: 0, in: http.Header{}, trace: restart, sampled: false},
		{name: "no context, rate 1", rate: 1, in: http.Header{}, trace: restart, sampled: true},
		{name: "invalid context, rate 1", rate: 1, in: http.Header{headerTraceparent: {"garbage"}}, trace: restart, sampled: true},
		{name: "override forces a not-sampled parent", rate: 0, in: with(unsampledParent, OverrideHeader, "1"), trace: keep, sampled: true, formats: FormatW3C},
		{name: "override 1.0 forces a new trace", rate: 0, in: with(http.Header{}, OverrideHeader, "1.0"), trace: restart, sampled: true},
		{name: "override 0 never suppresses", rate: 0, in: with(sampledParent, OverrideHeader, "0"), trace: keep, sampled: true, formats: FormatW3C},
		{name: "override 0 on a new trace", rate: 1, in: with(http.Header{}, OverrideHeader, "0"), trace: restart, sampled: true},
		{name: "override with whitespace", rate: 0, in: with(unsampledParent, OverrideHeader, " 1 "), trace: keep, sampled: true, formats: FormatW3C},
		{name: "override first field wins", rate: 0, in: with(unsampledParent, OverrideHeader, "1", OverrideHeader, "0"), trace: keep, sampled: true, formats: FormatW3C},
		{name: "malformed override ignored", rate: 0, in: with(unsampledParent, OverrideHeader, "yes"), trace: keep, sampled: false, formats: FormatW3C},
		{name: "override above 1 ignored", rate: 0, in: with(unsampledParent, OverrideHeader, "1.5"), trace: keep, sampled: false, formats: FormatW3C},
		{name: "negative override ignored", rate: 0, in: with(unsampledParent, OverrideHeader, "-1"), trace: keep, sampled: false, formats: FormatW3C},
		{name: "NaN override ignored", rate: 0, in: with(unsampledParent, OverrideHeader, "NaN"), trace: keep, sampled: false, formats: FormatW3C},
		{name: "b3 debug forces", rate: 0, in: http.Header{headerB3: {b3Trace + "-" + b3Span + "-d"}}, trace: keep, sampled: true, debug: true, formats: FormatB3Single},
		{name: "X-B3 debug beats X-B3-Sampled 0", rate: 0, in: http.Header{headerB3TraceID: {b3Trace}, headerB3SpanID: {b3Span}, headerB3Sampled: {"0"}, headerB3Flags: {"1"}}, trace: keep, sampled: true, debug: true, formats: FormatB3Multi},
		{name: "bare b3 debug starts a sampled trace", rate: 0, in: http.Header{headerB3: {"d"}}, trace: restart, sampled: true, debug: true, formats: FormatB3Single},
		{name: "bare b3 0 is followed", rate: 1, in: http.Header{headerB3: {"0"}}, trace: restart, sampled: false, formats: FormatB3Single},
		{name: "bare b3 1 is followed", rate: 0, in: http.Header{headerB3: {"1"}}, trace: restart, sampled: true, formats: FormatB3Single},
		{name: "bare X-B3-Sampled 0 is followed", rate: 1, in: http.Header{headerB3Sampled: {"0"}}, trace: restart, sampled: false, formats: FormatB3Multi},
		{name: "override beats bare b3 0", rate: 0, in: with(http.Header{headerB3: {"0"}}, OverrideHeader, "1"), trace: restart, sampled: true, formats: FormatB3Single},
		{name: "deferred b3 at rate 1", rate: 1, in: deferredB3(), trace: keep, sampled: true, formats: FormatB3Single},
		{name: "deferred b3 at rate 0", rate: 0, in: deferredB3(), trace: keep, sampled: false, formats: FormatB3Single},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Clone()
			incoming, ok := Extract(in)
			c := NewSampler(tt.rate).Decide(in)

			if _, present := in[OverrideHeader]; present {
				t.Errorf("Decide left %s in the header", OverrideHeader)
			}
			if c.Sampled != tt.sampled || c.Debug != tt.debug || c.Formats != tt.formats || c.Deferred {
				t.Errorf("Decide = %+v, want Sampled %v, Debug %v, Formats %v, not Deferred", c, tt.sampled, tt.debug, tt.formats)
			}
			switch tt.trace {
			case keep:
				if !ok || c.TraceID != incoming.TraceID || c.SpanID != incoming.SpanID || c.TraceState != incoming.TraceState {
					t.Errorf("Decide = %+v, want the incoming trace %+v", c, incoming)
				}
			case restart:
				if !c.TraceID.IsValid() || c.SpanID.IsValid() || !c.Random || c.TraceState != "" || c.B3TraceID64 {
					t.Errorf("Decide = %+v, want a new random trace id, zero span id, no tracestate", c)
				}
			}
		})
	}
}

func TestDecideStartsDistinctTraces(t *testing.T) {
	s := NewSampler(1)
	a, b := s.Decide(http.Header{}), s.Decide(http.Header{})
	if a.TraceID == b.TraceID {
		t.Errorf("two new traces share trace id %v", a.TraceID)
	}
}

// The decision made for a bare b3 decision travels on, now with ids.
func TestDecideThenInjectPropagatesBareDecision(t *testing.T) {
	c := NewSampler(1).Decide(http.Header{headerB3: {"0"}})
	h := http.Header{}
	Inject(h, c.Child(NewSpanID()))
	got, ok := Extract(h)
	if !ok || got.Sampled || got.TraceID != c.TraceID || got.Formats != FormatB3Single {
		t.Errorf("after Decide and Inject, next hop sees %+v, %v (headers %v)", got, ok, h)
	}
}

func TestNilSamplerFollowsParentsAndStartsNothing(t *testing.T) {
	var s *Sampler
	if c := s.Decide(http.Header{headerTraceparent: {tpValid}}); !c.Sampled {
		t.Errorf("nil sampler dropped a sampled parent: %+v", c)
	}
	if c := s.Decide(http.Header{}); c.Sampled {
		t.Errorf("nil sampler started a sampled trace: %+v", c)
	}
	if s.Rate() != 0 {
		t.Errorf("nil sampler rate = %v", s.Rate())
	}
}

func TestNewSamplerClamps(t *testing.T) {
	for _, tt := range []struct{ in, want float64 }{
		{0.001, 0.001}, {0, 0}, {1, 1}, {-0.5, 0}, {2, 1}, {math.NaN(), 0}, {math.Inf(1), 1},
	} {
		if got := NewSampler(tt.in).Rate(); got != tt.want {
			t.Errorf("NewSampler(%v).Rate() = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func withLow64(v uint64) TraceID {
	var t TraceID
	t[0] = 1 // the upper half must not matter
	binary.BigEndian.PutUint64(t[8:], v)
	return t
}

func TestTraceIDBelow(t *testing.T) {
	tests := []struct {
		low  uint64
		rate float64
		want bool
	}{
		{0, 0, false},
		{0, 1e-12, true},
		{math.MaxUint64, 1, true},
		{math.MaxUint64, 0.999999, false},
		{1 << 63, 0.5, false}, // 2^62 after the shift: exactly at the bound
		{1<<63 - 2, 0.5, true},
		{3 << 62, 0.75, false},
		{3<<62 - 2, 0.75, true},
	}
	for _, tt := range tests {
		if got := traceIDBelow(withLow64(tt.low), thresholdFor(tt.rate)); got != tt.want {
			t.Errorf("traceIDBelow(low %#x, rate %v) = %v, want %v", tt.low, tt.rate, got, tt.want)
		}
	}
}

// Deterministic on the trace id: every hop at the same rate agrees, and the share
// sampled matches the rate.
func TestDecideRateIsConsistentAndProportional(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	a, b := NewSampler(0.25), NewSampler(0.25)
	sampled := 0
	for range n {
		var id TraceID
		binary.BigEndian.PutUint64(id[:8], rng.Uint64())
		binary.BigEndian.PutUint64(id[8:], rng.Uint64())
		h := http.Header{headerB3: {id.String() + "-" + b3Span}} // deferred: the rate decides
		ca, cb := a.Decide(h.Clone()), b.Decide(h.Clone())
		if ca.Sampled != cb.Sampled {
			t.Fatalf("two samplers disagree on trace %v", id)
		}
		if ca.Sampled {
			sampled++
		}
	}
	if got := float64(sampled) / n; got < 0.23 || got > 0.27 {
		t.Errorf("sampled share = %v at rate 0.25", got)
	}
}

// The override samples with its probability, decided on the trace id too.
func TestOverrideProbability(t *testing.T) {
	low, high := withLow64(0), withLow64(math.MaxUint64-1)
	for _, tt := range []struct {
		id   TraceID
		want bool
	}{{low, true}, {high, false}} {
		h := http.Header{
			headerTraceparent: {"00-" + tt.id.String() + "-" + tpParent + "-00"},
			OverrideHeader:    {"0.5"},
		}
		if got := NewSampler(0).Decide(h).Sampled; got != tt.want {
			t.Errorf("override 0.5 on trace %v: sampled = %v, want %v", tt.id, got, tt.want)
		}
	}
}
