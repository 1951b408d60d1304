package spans

import (
	"net/http"
	"strings"
	"testing"
)

const (
	otherTrace = "0af7651916cd43dd8448eb211c80319c"
	otherSpan  = "b7ad6b7169203331"
)

func TestExtractPriority(t *testing.T) {
	w3c := http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: {"congo=t61rcWkgMzE"}}
	b3 := http.Header{HeaderB3: {b3Trace + "-" + b3Span + "-0"}}
	multi := http.Header{HeaderB3TraceID: {otherTrace}, HeaderB3SpanID: {otherSpan}, HeaderB3Sampled: {"1"}}
	merge := func(hs ...http.Header) http.Header {
		out := http.Header{}
		for _, h := range hs {
			for k, v := range h {
				out[k] = append(out[k], v...)
			}
		}
		return out
	}
	fromW3C := func(t *testing.T) Context {
		return Context{TraceID: traceID(t, tpTrace), SpanID: spanID(t, tpParent), Sampled: true, TraceState: "congo=t61rcWkgMzE"}
	}
	fromB3 := func(t *testing.T) Context {
		return Context{TraceID: traceID(t, b3Trace), SpanID: spanID(t, b3Span)}
	}
	fromMulti := func(t *testing.T) Context {
		return Context{TraceID: traceID(t, otherTrace), SpanID: spanID(t, otherSpan), Sampled: true}
	}
	badTraceparent := http.Header{HeaderTraceparent: {"ff" + tpValid[2:]}, HeaderTracestate: {"congo=t61rcWkgMzE"}}

	tests := []struct {
		name    string
		in      http.Header
		want    func(*testing.T) Context // without Formats
		formats Format
		ok      bool
	}{
		{name: "nothing", in: http.Header{"Accept": {"*/*"}}, want: func(*testing.T) Context { return Context{} }},
		{name: "w3c", in: w3c, want: fromW3C, formats: FormatW3C, ok: true},
		{name: "w3c beats b3 and X-B3", in: merge(w3c, b3, multi), want: fromW3C, formats: FormatW3C | FormatB3Single | FormatB3Multi, ok: true},
		{name: "b3 beats X-B3", in: merge(b3, multi), want: fromB3, formats: FormatB3Single | FormatB3Multi, ok: true},
		{name: "X-B3 alone", in: multi, want: fromMulti, formats: FormatB3Multi, ok: true},
		{name: "invalid traceparent falls through and drops tracestate", in: merge(badTraceparent, b3), want: fromB3, formats: FormatB3Single, ok: true},
		{name: "invalid traceparent alone restarts", in: badTraceparent, want: func(*testing.T) Context { return Context{} }},
		{
			name: "repeated traceparent restarts", in: http.Header{HeaderTraceparent: {tpValid, tpValid}},
			want: func(*testing.T) Context { return Context{} },
		},
		{
			name: "invalid tracestate is dropped, traceparent kept",
			in:   http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: {"foo=1,FOO=2"}},
			want: func(t *testing.T) Context {
				c := fromW3C(t)
				c.TraceState = ""
				return c
			},
			formats: FormatW3C, ok: true,
		},
		{
			name: "tracestate with a duplicate key is kept, the later entry dropped",
			in:   http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: {"foo=1,bar=2,foo=3"}},
			want: func(t *testing.T) Context {
				c := fromW3C(t)
				c.TraceState = "foo=1,bar=2"
				return c
			},
			formats: FormatW3C, ok: true,
		},
		{
			name: "tracestate with a 256-character key is kept",
			in:   http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: {"foo=1", strings.Repeat("z", 256) + "=1"}},
			want: func(t *testing.T) Context {
				c := fromW3C(t)
				c.TraceState = "foo=1," + strings.Repeat("z", 256) + "=1"
				return c
			},
			formats: FormatW3C, ok: true,
		},
		{
			name: "tracestate with a 257-character key is dropped",
			in:   http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: {"foo=1", strings.Repeat("z", 257) + "=1"}},
			want: func(t *testing.T) Context {
				c := fromW3C(t)
				c.TraceState = ""
				return c
			},
			formats: FormatW3C, ok: true,
		},
		{
			name: "tracestate with multi-tenant keys is kept",
			in:   http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: {"foo@=1,tenant@sys@x=2," + strings.Repeat("t", 250) + "@sssss=3"}},
			want: func(t *testing.T) Context {
				c := fromW3C(t)
				c.TraceState = "foo@=1,tenant@sys@x=2," + strings.Repeat("t", 250) + "@sssss=3"
				return c
			},
			formats: FormatW3C, ok: true,
		},
		{
			name: "tracestate fields combined",
			in:   http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: {"rojo=1", "congo=2"}},
			want: func(t *testing.T) Context {
				c := fromW3C(t)
				c.TraceState = "rojo=1,congo=2"
				return c
			},
			formats: FormatW3C, ok: true,
		},
		{name: "invalid b3 falls through to X-B3", in: merge(http.Header{HeaderB3: {"nonsense"}}, multi), want: fromMulti, formats: FormatB3Multi, ok: true},
		{name: "ids in X-B3 beat a bare b3 decision", in: merge(http.Header{HeaderB3: {"0"}}, multi), want: fromMulti, formats: FormatB3Single | FormatB3Multi, ok: true},
		{
			name: "bare b3 decision", in: http.Header{HeaderB3: {"0"}},
			want: func(*testing.T) Context { return Context{} }, formats: FormatB3Single,
		},
		{
			name: "bare b3 debug", in: http.Header{HeaderB3: {"d"}},
			want: func(*testing.T) Context { return Context{Sampled: true, Debug: true} }, formats: FormatB3Single,
		},
		{
			name: "bare b3 decision beats bare X-B3 decision", in: http.Header{HeaderB3: {"1"}, HeaderB3Sampled: {"0"}},
			want: func(*testing.T) Context { return Context{Sampled: true} }, formats: FormatB3Single | FormatB3Multi,
		},
		{
			name: "bare X-B3 decision", in: http.Header{HeaderB3Sampled: {"0"}},
			want: func(*testing.T) Context { return Context{} }, formats: FormatB3Multi,
		},
		{
			name: "w3c beats a bare b3 decision", in: merge(w3c, http.Header{HeaderB3: {"0"}}),
			want: fromW3C, formats: FormatW3C | FormatB3Single, ok: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := Extract(tt.in)
			want := tt.want(t)
			want.Formats = tt.formats
			if c != want || ok != tt.ok {
				t.Errorf("Extract(%v) = %+v, %v\nwant %+v, %v", tt.in, c, ok, want, tt.ok)
			}
		})
	}
}

func TestInjectRemovesEveryTraceHeader(t *testing.T) {
	h := http.Header{"Accept": {"*/*"}}
	for _, k := range traceHeaders {
		h[k] = []string{"stale"}
	}
	c := Context{TraceID: traceID(t, tpTrace), SpanID: spanID(t, tpParent), Sampled: true}
	Inject(h, c)
	want := http.Header{"Accept": {"*/*"}, HeaderTraceparent: {tpValid}}
	if !equalHeaders(h, want) {
		t.Errorf("Inject left %v, want %v", h, want)
	}
}

// TraceHeaders and IsTraceHeader name exactly the headers Inject manages: all it
// writes, in every format, and nothing else.
func TestTraceHeadersAreWhatInjectManages(t *testing.T) {
	all := Context{TraceID: traceID(t, tpTrace), SpanID: spanID(t, tpParent), Sampled: true, TraceState: "a=b",
		Formats: FormatW3C | FormatB3Single | FormatB3Multi}
	written := map[string]bool{}
	for _, c := range []Context{all, {Debug: true, Formats: FormatB3Multi}, {Formats: FormatB3Multi}} {
		h := http.Header{}
		Inject(h, c)
		for k := range h {
			written[k] = true
			if !IsTraceHeader(k) {
				t.Errorf("Inject writes %s, which IsTraceHeader denies", k)
			}
		}
	}
	if len(written) < 7 {
		t.Fatalf("the contexts wrote only %v", written)
	}
	keys := TraceHeaders()
	for _, k := range keys {
		if !IsTraceHeader(k) || http.CanonicalHeaderKey(k) != k {
			t.Errorf("%s: not a canonical trace header", k)
		}
		h := http.Header{k: {"stale"}}
		Inject(h, Context{})
		if len(h) != 0 {
			t.Errorf("Inject leaves %s in place", k)
		}
	}
	for _, k := range []string{"Accept", "traceparent", OverrideHeader, ""} {
		if IsTraceHeader(k) {
			t.Errorf("IsTraceHeader(%q)", k)
		}
	}
}

func TestInject(t *testing.T) {
	c := Context{TraceID: traceID(t, tpTrace), SpanID: spanID(t, tpParent), Sampled: true, Random: true, TraceState: "congo=t61rcWkgMzE"}
	tp := "00-" + tpTrace + "-" + tpParent + "-03"
	withFormats := func(f Format) Context { d := c; d.Formats = f; return d }
	tests := []struct {
		name string
		c    Context
		want http.Header
	}{
		{name: "no formats means W3C", c: c, want: http.Header{HeaderTraceparent: {tp}, HeaderTracestate: {"congo=t61rcWkgMzE"}}},
		{name: "unknown format bits mean W3C", c: withFormats(1 << 7), want: http.Header{HeaderTraceparent: {tp}, HeaderTracestate: {"congo=t61rcWkgMzE"}}},
		{name: "b3 only", c: withFormats(FormatB3Single), want: http.Header{HeaderB3: {tpTrace + "-" + tpParent + "-1"}}},
		{
			name: "all formats", c: withFormats(FormatW3C | FormatB3Single | FormatB3Multi),
			want: http.Header{
				HeaderTraceparent: {tp}, HeaderTracestate: {"congo=t61rcWkgMzE"},
				HeaderB3:        {tpTrace + "-" + tpParent + "-1"},
				HeaderB3TraceID: {tpTrace}, HeaderB3SpanID: {tpParent}, HeaderB3Sampled: {"1"},
			},
		},
		{name: "no tracestate", c: Context{TraceID: c.TraceID, SpanID: c.SpanID}, want: http.Header{HeaderTraceparent: {"00-" + tpTrace + "-" + tpParent + "-00"}}},
		{name: "no span id: no traceparent", c: Context{TraceID: c.TraceID, Sampled: true, TraceState: "a=b"}, want: http.Header{}},
		{name: "bare decision in b3", c: Context{Formats: FormatB3Single}, want: http.Header{HeaderB3: {"0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			Inject(h, tt.c)
			if !equalHeaders(h, tt.want) {
				t.Errorf("Inject(%+v) wrote %v, want %v", tt.c, h, tt.want)
			}
		})
	}
}

// What arrives, continued with our span id, reaches the next hop unchanged but for
// the parent: header sets in every format and mix.
func TestExtractInjectRoundTrip(t *testing.T) {
	inputs := []http.Header{
		{HeaderTraceparent: {tpValid}},
		{HeaderTraceparent: {"00-" + tpTrace + "-" + tpParent + "-02"}, HeaderTracestate: {"rojo=00f067aa0ba902b7, congo=t61rcWkgMzE", "a@b=c"}},
		{HeaderTraceparent: {"cc-" + tpTrace + "-" + tpParent + "-01-future"}},
		{HeaderB3: {b3Trace + "-" + b3Span + "-1-" + b3Parent}},
		{HeaderB3: {b3Trace64 + "-" + b3Span}},
		{HeaderB3: {b3Trace64 + "-" + b3Span + "-d"}},
		{HeaderB3: {"0"}},
		{HeaderB3: {"d"}},
		{HeaderB3TraceID: {b3Trace64}, HeaderB3SpanID: {b3Span}, HeaderB3Sampled: {"true"}, HeaderB3ParentID: {b3Parent}},
		{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}, HeaderB3Flags: {"1"}, HeaderB3Sampled: {"0"}},
		{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}},
		{HeaderB3Sampled: {"1"}},
		{HeaderB3Flags: {"1"}},
		{HeaderTraceparent: {tpValid}, HeaderB3: {b3Trace64 + "-" + b3Span + "-0"}, HeaderB3Sampled: {"0"}},
		{HeaderB3: {"1"}, HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}},
	}
	next := spanID(t, "1111111111111111")
	for _, in := range inputs {
		c, ok := Extract(in)
		if c.Formats == 0 {
			t.Fatalf("Extract(%v) found nothing", in)
		}
		if ok {
			c = c.Child(next)
		}
		h := http.Header{}
		Inject(h, c)
		got, gotOK := Extract(h)
		if got != c || gotOK != ok {
			t.Errorf("Extract(%v) = %+v, %v\nafter Inject: %v\nExtract = %+v, %v", in, c, ok, h, got, gotOK)
		}
	}
}

func TestChildAndFlags(t *testing.T) {
	c := Context{TraceID: traceID(t, tpTrace), SpanID: spanID(t, tpParent), Sampled: true, TraceState: "a=b", Formats: FormatB3Multi}
	id := spanID(t, otherSpan)
	child := c.Child(id)
	want := c
	want.SpanID = id
	if child != want {
		t.Errorf("Child = %+v, want %+v", child, want)
	}
	for _, tt := range []struct {
		c    Context
		want uint8
	}{
		{Context{}, 0},
		{Context{Sampled: true}, FlagSampled},
		{Context{Debug: true}, FlagSampled},
		{Context{Random: true}, FlagRandom},
		{Context{Sampled: true, Random: true}, FlagSampled | FlagRandom},
	} {
		if got := tt.c.Flags(); got != tt.want {
			t.Errorf("%+v.Flags() = %#x, want %#x", tt.c, got, tt.want)
		}
	}
}

// IsASCII finds a high byte wherever it is: in a word of eight or in the tail.
func TestIsASCII(t *testing.T) {
	base := "0123456789abcdefXYZ"
	if !IsASCII(base) || !IsASCII("") {
		t.Fatal("ASCII strings reported otherwise")
	}
	for i := range len(base) {
		s := base[:i] + "\x80" + base[i+1:]
		if IsASCII(s) {
			t.Errorf("%q: high byte at %d missed", s, i)
		}
	}
}
