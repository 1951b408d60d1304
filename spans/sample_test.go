package spans

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
)

func TestDecide(t *testing.T) {
	sampledParent := http.Header{HeaderTraceparent: {"00-" + tpTrace + "-" + tpParent + "-01"}}
	unsampledParent := http.Header{HeaderTraceparent: {"00-" + tpTrace + "-" + tpParent + "-00"}}
	deferredB3 := func() http.Header { return http.Header{HeaderB3: {b3Trace + "-" + b3Span}} }
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
		{name: "invalid context, rate 1", rate: 1, in: http.Header{HeaderTraceparent: {"garbage"}}, trace: restart, sampled: true},
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
		{name: "b3 debug forces", rate: 0, in: http.Header{HeaderB3: {b3Trace + "-" + b3Span + "-d"}}, trace: keep, sampled: true, debug: true, formats: FormatB3Single},
		{name: "X-B3 debug beats X-B3-Sampled 0", rate: 0, in: http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}, HeaderB3Sampled: {"0"}, HeaderB3Flags: {"1"}}, trace: keep, sampled: true, debug: true, formats: FormatB3Multi},
		{name: "bare b3 debug starts a sampled trace", rate: 0, in: http.Header{HeaderB3: {"d"}}, trace: restart, sampled: true, debug: true, formats: FormatB3Single},
		{name: "bare b3 0 is followed", rate: 1, in: http.Header{HeaderB3: {"0"}}, trace: restart, sampled: false, formats: FormatB3Single},
		{name: "bare b3 1 is followed", rate: 0, in: http.Header{HeaderB3: {"1"}}, trace: restart, sampled: true, formats: FormatB3Single},
		{name: "bare X-B3-Sampled 0 is followed", rate: 1, in: http.Header{HeaderB3Sampled: {"0"}}, trace: restart, sampled: false, formats: FormatB3Multi},
		{name: "override beats bare b3 0", rate: 0, in: with(http.Header{HeaderB3: {"0"}}, OverrideHeader, "1"), trace: restart, sampled: true, formats: FormatB3Single},
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
	c := NewSampler(1).Decide(http.Header{HeaderB3: {"0"}})
	h := http.Header{}
	Inject(h, c.Child(NewSpanID()))
	got, ok := Extract(h)
	if !ok || got.Sampled || got.TraceID != c.TraceID || got.Formats != FormatB3Single {
		t.Errorf("after Decide and Inject, next hop sees %+v, %v (headers %v)", got, ok, h)
	}
}

func TestNilSamplerFollowsParentsAndStartsNothing(t *testing.T) {
	var s *Sampler
	if c := s.Decide(http.Header{HeaderTraceparent: {tpValid}}); !c.Sampled {
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
		h := http.Header{HeaderB3: {id.String() + "-" + b3Span}} // deferred: the rate decides
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
			HeaderTraceparent: {"00-" + tt.id.String() + "-" + tpParent + "-00"},
			OverrideHeader:    {"0.5"},
		}
		if got := NewSampler(0).Decide(h).Sampled; got != tt.want {
			t.Errorf("override 0.5 on trace %v: sampled = %v, want %v", tt.id, got, tt.want)
		}
	}
}

// countingLimiter allows the first n forced traces.
type countingLimiter struct{ n, asked int }

func (l *countingLimiter) Allow() bool {
	l.asked++
	return l.asked <= l.n
}

// DecideFor: an untrusted sender keeps its ids but not its say in sampling; a
// trusted one's forced traces are rationed, and a refused one gets the decision
// it would have had without forcing.
func TestDecideFor(t *testing.T) {
	low, high := withLow64(0), withLow64(math.MaxUint64-1) // sampled at any rate > 0 / at none < 1
	tp := func(id TraceID, flags string) http.Header {
		return http.Header{HeaderTraceparent: {"00-" + id.String() + "-" + tpParent + "-" + flags}}
	}
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	b3 := func(id TraceID, state string) http.Header {
		return http.Header{HeaderB3: {id.String() + "-" + b3Span + state}}
	}
	const (
		none   = -1 // no limiter
		refuse = 0  // a limiter that refuses everything
		allow  = 1  // a limiter that allows one
	)
	tests := []struct {
		name      string
		rate      float64
		in        http.Header
		untrusted bool
		limit     int
		sampled   bool
		debug     bool
		out       Outcome
		asked     int // times the limiter was asked
	}{
		// Untrusted senders: the rate decides on the incoming trace id.
		{name: "untrusted sampled parent, rate 0", in: tp(low, "01"), untrusted: true, limit: allow, sampled: false, out: OutcomeUntrusted},
		{name: "untrusted sampled parent, rate says yes", rate: 0.5, in: tp(low, "01"), untrusted: true, limit: allow, sampled: true, out: OutcomeUntrusted},
		{name: "untrusted unsampled parent, rate says yes", rate: 0.5, in: tp(low, "00"), untrusted: true, limit: allow, sampled: true, out: OutcomeNone},
		{name: "untrusted unsampled parent, rate says no", rate: 0.5, in: tp(high, "00"), untrusted: true, limit: allow, sampled: false, out: OutcomeNone},
		{name: "untrusted override", in: with(tp(low, "00"), OverrideHeader, "1"), untrusted: true, limit: allow, sampled: false, out: OutcomeUntrusted},
		{name: "untrusted override 0 asks nothing", in: with(tp(low, "00"), OverrideHeader, "0"), untrusted: true, limit: allow, sampled: false, out: OutcomeNone},
		{name: "untrusted b3 debug", in: b3(low, "-d"), untrusted: true, limit: allow, sampled: false, out: OutcomeUntrusted},
		{name: "untrusted bare b3 debug", in: http.Header{HeaderB3: {"d"}}, untrusted: true, limit: allow, sampled: false, out: OutcomeUntrusted},
		{name: "untrusted X-B3-Flags", in: http.Header{HeaderB3TraceID: {low.String()}, HeaderB3SpanID: {b3Span}, HeaderB3Flags: {"1"}}, untrusted: true, limit: allow, sampled: false, out: OutcomeUntrusted},
		{name: "untrusted X-B3-Sampled", in: http.Header{HeaderB3TraceID: {low.String()}, HeaderB3SpanID: {b3Span}, HeaderB3Sampled: {"1"}}, untrusted: true, limit: allow, sampled: false, out: OutcomeUntrusted},
		{name: "untrusted no context, rate 1", rate: 1, in: http.Header{}, untrusted: true, limit: allow, sampled: true, out: OutcomeNone},

		// Trusted senders: parents are followed unrationed; forcing is rationed.
		{name: "sampled parent is not charged", in: tp(low, "01"), limit: refuse, sampled: true, out: OutcomeNone},
		{name: "override forces", in: with(tp(high, "00"), OverrideHeader, "1"), limit: allow, sampled: true, out: OutcomeForced, asked: 1},
		{name: "override refused: the parent decides", in: with(tp(high, "00"), OverrideHeader, "1"), limit: refuse, sampled: false, out: OutcomeRefused, asked: 1},
		{name: "override on a new trace refused: the rate decides", rate: 0, in: with(http.Header{}, OverrideHeader, "1"), limit: refuse, sampled: false, out: OutcomeRefused, asked: 1},
		{name: "override on a sampled parent is not charged", in: with(tp(low, "01"), OverrideHeader, "1"), limit: refuse, sampled: true, out: OutcomeNone},
		{name: "override that would not sample is not charged", in: with(tp(high, "00"), OverrideHeader, "0.5"), limit: refuse, sampled: false, out: OutcomeNone},
		{name: "override with no limiter", in: with(tp(high, "00"), OverrideHeader, "1"), limit: none, sampled: true, out: OutcomeForced},
		{name: "bare b3 debug forces", in: http.Header{HeaderB3: {"d"}}, limit: allow, sampled: true, debug: true, out: OutcomeForced, asked: 1},
		{name: "bare b3 debug refused: the rate decides, no debug", in: http.Header{HeaderB3: {"d"}}, limit: refuse, sampled: false, out: OutcomeRefused, asked: 1},
		{name: "bare X-B3-Flags refused", in: http.Header{HeaderB3Flags: {"1"}}, limit: refuse, sampled: false, out: OutcomeRefused, asked: 1},
		{name: "bare b3 debug sampled at the rate anyway is not charged", rate: 1, in: http.Header{HeaderB3: {"d"}}, limit: refuse, sampled: true, debug: true, out: OutcomeNone},
		{name: "b3 debug with ids is followed, not charged", in: b3(high, "-d"), limit: refuse, sampled: true, debug: true, out: OutcomeNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Clone()
			incoming, ok := Extract(in)
			var lim *countingLimiter
			p := Policy{Untrusted: tt.untrusted}
			if tt.limit != none {
				lim = &countingLimiter{n: tt.limit}
				p.Forced = lim
			}
			c, out := NewSampler(tt.rate).DecideFor(in, p)
			if _, present := in[OverrideHeader]; present {
				t.Errorf("DecideFor left %s in the header", OverrideHeader)
			}
			if c.Sampled != tt.sampled || c.Debug != tt.debug || c.Deferred || out != tt.out {
				t.Errorf("DecideFor = %+v, %v; want Sampled %v, Debug %v, outcome %v", c, out, tt.sampled, tt.debug, tt.out)
			}
			if lim != nil && lim.asked != tt.asked {
				t.Errorf("limiter asked %d times, want %d", lim.asked, tt.asked)
			}
			if ok && (c.TraceID != incoming.TraceID || c.SpanID != incoming.SpanID || c.TraceState != incoming.TraceState || c.Formats != incoming.Formats) {
				t.Errorf("DecideFor = %+v, want the incoming trace %+v kept", c, incoming)
			}
			if !ok && (!c.TraceID.IsValid() || c.SpanID.IsValid()) {
				t.Errorf("DecideFor = %+v, want a new trace", c)
			}
		})
	}
}
