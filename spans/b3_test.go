package spans

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

const (
	b3Trace   = "80f198ee56343ba864fe8b2a57d3eff7"
	b3Trace64 = "64fe8b2a57d3eff7"
	b3Span    = "e457b5a2e4d86bd1"
	b3Parent  = "05e3ac9a4f6e3b90"
)

func TestParseB3Single(t *testing.T) {
	trace128 := func(t *testing.T) TraceID { return traceID(t, b3Trace) }
	trace64 := func(t *testing.T) TraceID { return traceID(t, "0000000000000000"+b3Trace64) }
	tests := []struct {
		name string
		in   []string
		err  error
		// want, when valid: ids (zero for a bare decision) and flags.
		trace    func(*testing.T) TraceID
		sampled  bool
		debug    bool
		deferred bool
	}{
		{name: "sampled", in: []string{b3Trace + "-" + b3Span + "-1"}, trace: trace128, sampled: true},
		{name: "not sampled", in: []string{b3Trace + "-" + b3Span + "-0"}, trace: trace128},
		{name: "debug", in: []string{b3Trace + "-" + b3Span + "-d"}, trace: trace128, sampled: true, debug: true},
		{name: "with parent", in: []string{b3Trace + "-" + b3Span + "-1-" + b3Parent}, trace: trace128, sampled: true},
		{name: "zero parent accepted", in: []string{b3Trace + "-" + b3Span + "-1-0000000000000000"}, trace: trace128, sampled: true},
		{name: "deferred", in: []string{b3Trace + "-" + b3Span}, trace: trace128, deferred: true},
		{name: "64-bit trace id", in: []string{b3Trace64 + "-" + b3Span + "-1"}, trace: trace64, sampled: true},
		{name: "64-bit trace id, deferred", in: []string{b3Trace64 + "-" + b3Span}, trace: trace64, deferred: true},
		{name: "64-bit trace id with parent", in: []string{b3Trace64 + "-" + b3Span + "-0-" + b3Parent}, trace: trace64},
		{name: "optional whitespace", in: []string{" " + b3Trace + "-" + b3Span + "-1\t"}, trace: trace128, sampled: true},
		{name: "bare deny", in: []string{"0"}},
		{name: "bare accept", in: []string{"1"}, sampled: true},
		{name: "bare debug", in: []string{"d"}, sampled: true, debug: true},

		{name: "absent", in: nil, err: errAbsent},
		{name: "repeated", in: []string{"1", "1"}, err: errRepeated},
		{name: "empty", in: []string{""}, err: errB3Shape},
		{name: "bare state unknown", in: []string{"2"}, err: errB3State},
		{name: "bare state upper case", in: []string{"D"}, err: errB3State},
		{name: "bare state word", in: []string{"true"}, err: errB3Shape},
		{name: "state unknown", in: []string{b3Trace + "-" + b3Span + "-x"}, err: errB3State},
		{name: "state too long", in: []string{b3Trace + "-" + b3Span + "-11"}, err: errB3Shape},
		{name: "state missing", in: []string{b3Trace + "-" + b3Span + "-"}, err: errB3Shape},
		{name: "trace id upper case", in: []string{strings.ToUpper(b3Trace) + "-" + b3Span + "-1"}, err: errHex},
		{name: "trace id 31 digits", in: []string{b3Trace[1:] + "-" + b3Span + "-1"}, err: errB3Shape},
		{name: "trace id 17 digits", in: []string{"0" + b3Trace64 + "-" + b3Span + "-1"}, err: errB3Shape},
		{name: "trace id all zero", in: []string{strings.Repeat("0", 32) + "-" + b3Span + "-1"}, err: errZeroTraceID},
		{name: "64-bit trace id all zero", in: []string{strings.Repeat("0", 16) + "-" + b3Span + "-1"}, err: errZeroTraceID},
		{name: "span id non-hex", in: []string{b3Trace + "-" + "e457b5a2e4d86bdz" + "-1"}, err: errHex},
		{name: "span id all zero", in: []string{b3Trace + "-" + strings.Repeat("0", 16) + "-1"}, err: errZeroSpanID},
		{name: "span id too short", in: []string{b3Trace + "-" + b3Span[1:] + "-1"}, err: errB3Shape},
		{name: "wrong separator", in: []string{b3Trace + "_" + b3Span + "-1"}, err: errB3Shape},
		{name: "wrong separator before state", in: []string{b3Trace + "-" + b3Span + "_1"}, err: errB3Shape},
		{name: "wrong separator before parent", in: []string{b3Trace + "-" + b3Span + "-1_" + b3Parent}, err: errB3Shape},
		{name: "parent without state", in: []string{b3Trace + "-" + b3Span + "-" + b3Parent}, err: errB3Shape},
		{name: "parent non-hex", in: []string{b3Trace + "-" + b3Span + "-1-" + "05e3ac9a4f6e3b9Z"}, err: errHex},
		{name: "parent too long", in: []string{b3Trace + "-" + b3Span + "-1-" + b3Parent + "0"}, err: errB3Shape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseB3Single(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("parseB3Single(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if tt.err != nil {
				return
			}
			want := Context{Sampled: tt.sampled, Debug: tt.debug, Deferred: tt.deferred}
			if tt.trace != nil {
				want.TraceID, want.SpanID = tt.trace(t), spanID(t, b3Span)
				want.B3TraceID64 = want.TraceID.fits64()
			}
			if c != want {
				t.Errorf("parseB3Single(%q) = %+v, want %+v", tt.in, c, want)
			}
		})
	}
}

func TestParseB3Multi(t *testing.T) {
	ids := func(trace string) http.Header {
		return http.Header{HeaderB3TraceID: {trace}, HeaderB3SpanID: {b3Span}}
	}
	with := func(h http.Header, kv ...string) http.Header {
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name     string
		in       http.Header
		err      error
		trace    string // "" for a bare decision
		sampled  bool
		debug    bool
		deferred bool
	}{
		{name: "sampled", in: with(ids(b3Trace), "X-B3-Sampled", "1"), trace: b3Trace, sampled: true},
		{name: "not sampled", in: with(ids(b3Trace), "X-B3-Sampled", "0"), trace: b3Trace},
		{name: "sampled true", in: with(ids(b3Trace), "X-B3-Sampled", "true"), trace: b3Trace, sampled: true},
		{name: "sampled false", in: with(ids(b3Trace), "X-B3-Sampled", "false"), trace: b3Trace},
		{name: "deferred", in: ids(b3Trace), trace: b3Trace, deferred: true},
		{name: "debug", in: with(ids(b3Trace), "X-B3-Flags", "1"), trace: b3Trace, sampled: true, debug: true},
		{name: "debug beats not sampled", in: with(ids(b3Trace), "X-B3-Flags", "1", "X-B3-Sampled", "0"), trace: b3Trace, sampled: true, debug: true},
		{name: "flags 0", in: with(ids(b3Trace), "X-B3-Flags", "0", "X-B3-Sampled", "1"), trace: b3Trace, sampled: true},
		{name: "flags 0 alone defers", in: with(ids(b3Trace), "X-B3-Flags", "0"), trace: b3Trace, deferred: true},
		{name: "with parent", in: with(ids(b3Trace), "X-B3-ParentSpanId", b3Parent, "X-B3-Sampled", "1"), trace: b3Trace, sampled: true},
		{name: "64-bit trace id", in: with(ids(b3Trace64), "X-B3-Sampled", "1"), trace: "0000000000000000" + b3Trace64, sampled: true},
		{name: "whitespace", in: with(http.Header{HeaderB3TraceID: {" " + b3Trace}, HeaderB3SpanID: {b3Span + " "}}, "X-B3-Sampled", " 1"), trace: b3Trace, sampled: true},
		{name: "bare deny", in: with(http.Header{}, "X-B3-Sampled", "0")},
		{name: "bare accept", in: with(http.Header{}, "X-B3-Sampled", "1"), sampled: true},
		{name: "bare debug", in: with(http.Header{}, "X-B3-Flags", "1"), sampled: true, debug: true},

		{name: "nothing", in: http.Header{"Other": {"1"}}, err: errB3Nothing},
		{name: "flags 0 alone says nothing", in: http.Header{HeaderB3Flags: {"0"}}, err: errB3Nothing},
		{name: "trace id alone", in: http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3Sampled: {"1"}}, err: errB3Partial},
		{name: "span id alone", in: http.Header{HeaderB3SpanID: {b3Span}}, err: errB3Partial},
		{name: "parent alone", in: http.Header{HeaderB3ParentID: {b3Parent}, HeaderB3Sampled: {"1"}}, err: errB3Partial},
		{name: "sampled unknown", in: with(ids(b3Trace), "X-B3-Sampled", "yes"), err: errB3Sampled},
		{name: "sampled upper case", in: with(ids(b3Trace), "X-B3-Sampled", "True"), err: errB3Sampled},
		{name: "sampled d", in: with(http.Header{}, "X-B3-Sampled", "d"), err: errB3Sampled},
		{name: "flags unknown", in: with(ids(b3Trace), "X-B3-Flags", "2"), err: errB3Flags},
		{name: "trace id upper case", in: ids(strings.ToUpper(b3Trace)), err: errHex},
		{name: "trace id 20 digits", in: ids(b3Trace[:20]), err: errB3TraceID},
		{name: "trace id all zero", in: ids(strings.Repeat("0", 16)), err: errZeroTraceID},
		{name: "span id all zero", in: http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {strings.Repeat("0", 16)}}, err: errZeroSpanID},
		{name: "span id too long", in: http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span + "0"}}, err: errHex},
		{name: "parent non-hex", in: with(ids(b3Trace), "X-B3-ParentSpanId", "x"), err: errHex},
		{name: "repeated trace id", in: with(ids(b3Trace), "X-B3-TraceId", b3Trace), err: errRepeated},
		{name: "repeated sampled", in: with(ids(b3Trace), "X-B3-Sampled", "1", "X-B3-Sampled", "1"), err: errRepeated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseB3Multi(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("parseB3Multi(%v) error = %v, want %v", tt.in, err, tt.err)
			}
			if tt.err != nil {
				return
			}
			want := Context{Sampled: tt.sampled, Debug: tt.debug, Deferred: tt.deferred}
			if tt.trace != "" {
				want.TraceID, want.SpanID = traceID(t, tt.trace), spanID(t, b3Span)
				want.B3TraceID64 = strings.HasPrefix(tt.trace, strings.Repeat("0", 16))
			}
			if c != want {
				t.Errorf("parseB3Multi(%v) = %+v, want %+v", tt.in, c, want)
			}
		})
	}
}

func TestInjectB3(t *testing.T) {
	ids := Context{TraceID: traceID(t, b3Trace), SpanID: spanID(t, b3Span)}
	ids64 := Context{TraceID: traceID(t, "0000000000000000"+b3Trace64), SpanID: spanID(t, b3Span), B3TraceID64: true}
	set := func(c Context, f func(*Context)) Context { f(&c); return c }
	tests := []struct {
		name   string
		c      Context
		single string      // b3, "" for absent
		multi  http.Header // X-B3-*
	}{
		{
			name: "sampled", c: set(ids, func(c *Context) { c.Sampled = true }),
			single: b3Trace + "-" + b3Span + "-1",
			multi:  http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}, HeaderB3Sampled: {"1"}},
		},
		{
			name: "not sampled", c: ids,
			single: b3Trace + "-" + b3Span + "-0",
			multi:  http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}, HeaderB3Sampled: {"0"}},
		},
		{
			name: "debug", c: set(ids, func(c *Context) { c.Debug, c.Sampled = true, true }),
			single: b3Trace + "-" + b3Span + "-d",
			multi:  http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}, HeaderB3Flags: {"1"}},
		},
		{
			name: "deferred", c: set(ids, func(c *Context) { c.Deferred = true }),
			single: b3Trace + "-" + b3Span,
			multi:  http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}},
		},
		{
			name: "64-bit trace id", c: set(ids64, func(c *Context) { c.Sampled = true }),
			single: b3Trace64 + "-" + b3Span + "-1",
			multi:  http.Header{HeaderB3TraceID: {b3Trace64}, HeaderB3SpanID: {b3Span}, HeaderB3Sampled: {"1"}},
		},
		{
			// A 64-bit flag on an id that no longer fits would lose half the id.
			name: "64-bit flag on a 128-bit id", c: set(ids, func(c *Context) { c.B3TraceID64 = true }),
			single: b3Trace + "-" + b3Span + "-0",
			multi:  http.Header{HeaderB3TraceID: {b3Trace}, HeaderB3SpanID: {b3Span}, HeaderB3Sampled: {"0"}},
		},
		{name: "bare deny", c: Context{}, single: "0", multi: http.Header{HeaderB3Sampled: {"0"}}},
		{name: "bare accept", c: Context{Sampled: true}, single: "1", multi: http.Header{HeaderB3Sampled: {"1"}}},
		{name: "bare debug", c: Context{Sampled: true, Debug: true}, single: "d", multi: http.Header{HeaderB3Flags: {"1"}}},
		{name: "bare deferred writes nothing", c: Context{Deferred: true}, multi: http.Header{}},
		{
			name: "trace id without span id is bare", c: Context{TraceID: traceID(t, b3Trace), Sampled: true},
			single: "1", multi: http.Header{HeaderB3Sampled: {"1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			injectB3Single(h, tt.c)
			if got := h.Get(HeaderB3); got != tt.single || len(h) > 1 {
				t.Errorf("injectB3Single wrote %v, want b3: %q", h, tt.single)
			}
			h = http.Header{}
			injectB3Multi(h, tt.c)
			if !equalHeaders(h, tt.multi) {
				t.Errorf("injectB3Multi wrote %v, want %v", h, tt.multi)
			}
		})
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || strings.Join(va, "\x00") != strings.Join(vb, "\x00") || len(va) != len(vb) {
			return false
		}
	}
	return true
}
