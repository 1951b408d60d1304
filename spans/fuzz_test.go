package spans

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The fuzz tests compare the hand-written parsers with regular expressions
// transcribed from the grammars: slow, but easy to check against the specs.

var (
	reTraceparent = regexp.MustCompile(`(?s)^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$`)
	// Counted repetitions ({0,255}) would make a huge program and a slow fuzzer:
	// the lengths are checked in tracestateOracle instead.
	reTracestateKey   = regexp.MustCompile(`^[a-z0-9][a-z0-9_\-*/@]*$`)
	reTracestateValue = regexp.MustCompile(`^[\x20-\x2b\x2d-\x3c\x3e-\x7e]*[\x21-\x2b\x2d-\x3c\x3e-\x7e]$`)
	reB3Single        = regexp.MustCompile(`^(?:([0-9a-f]{32}|[0-9a-f]{16})-([0-9a-f]{16})(?:-([01d])(?:-[0-9a-f]{16})?)?|[01d])$`)
)

func zeroHex(s string) bool { return strings.Trim(s, "0") == "" }

func traceparentOracle(v string) bool {
	m := reTraceparent.FindStringSubmatch(trimOWS(v))
	if m == nil || m[1] == "ff" || zeroHex(m[2]) || zeroHex(m[3]) {
		return false
	}
	return m[1] != "00" || m[5] == ""
}

// tracestateOracle says whether fields are a valid tracestate (Level 2 grammar),
// and what is kept of it: the members in order, a repeated key's later entries
// dropped.
func tracestateOracle(fields []string) (bool, string) {
	seen := map[string]bool{}
	var kept []string
	n := 0
	for _, m := range strings.Split(strings.Join(fields, ","), ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		n++
		key, value, _ := strings.Cut(m, "=")
		switch {
		case !reTracestateKey.MatchString(key), len(key) > 256:
			return false, ""
		case !reTracestateValue.MatchString(value), len(value) > 256:
			return false, ""
		}
		if !seen[key] {
			kept = append(kept, m)
		}
		seen[key] = true
	}
	return n <= 32, strings.Join(kept, ",")
}

func b3SingleOracle(v string) bool {
	m := reB3Single.FindStringSubmatch(trimOWS(v))
	if m == nil {
		return false
	}
	return m[1] == "" || (!zeroHex(m[1]) && !zeroHex(m[2]))
}

// checkStable is the property every fuzzer ends with: what Extract accepts, Inject
// writes so that Extract reads the same context back, before and after our span
// becomes the parent; and a sampling decision survives Decide and Inject.
func checkStable(t *testing.T, h http.Header) {
	t.Helper()
	c, ok := Extract(h)
	if ok != c.IsValid() {
		t.Fatalf("Extract(%q) = %+v, ok %v: ok must mean valid ids", h, c, ok)
	}
	if ts := c.TraceState; ts != "" {
		if got, err := parseTracestate([]string{ts}); err != nil || got != ts {
			t.Fatalf("Extract(%q) kept tracestate %q, which reparses to %q, %v", h, ts, got, err)
		}
	}
	for _, next := range []Context{c, c.Child(SpanID{1})} {
		if !ok && next != c {
			continue
		}
		out := http.Header{}
		Inject(out, next)
		got, gotOK := Extract(out)
		if got != next || gotOK != ok {
			t.Fatalf("Extract(%q) = %+v, %v\nInject(%+v) = %q\nExtract = %+v, %v", h, c, ok, next, out, got, gotOK)
		}
	}
	d := NewSampler(0.5).Decide(h.Clone())
	out := http.Header{}
	Inject(out, d.Child(SpanID{2}))
	got, gotOK := Extract(out)
	if !gotOK || got.TraceID != d.TraceID || got.Sampled != d.Sampled || got.Deferred {
		t.Fatalf("Decide(%q) = %+v, but the next hop reads %+v, %v from %q", h, d, got, gotOK, out)
	}
}

func FuzzTraceparent(f *testing.F) {
	for _, s := range []string{
		tpValid,
		"00-" + tpTrace + "-" + tpParent + "-03",
		"cc-" + tpTrace + "-" + tpParent + "-01-what-the-future-will-be-like",
		"cc-" + tpTrace + "-" + tpParent + "-01.what",
		"ff-" + tpTrace + "-" + tpParent + "-01",
		"00-00000000000000000000000000000000-" + tpParent + "-01",
		"00-" + tpTrace + "-0000000000000000-01",
		" \t" + tpValid + " ",
		"00-" + strings.ToUpper(tpTrace) + "-" + tpParent + "-01",
		"",
	} {
		f.Add(s, "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7")
	}
	f.Fuzz(func(t *testing.T, tp, ts string) {
		c, err := parseTraceparent(tp)
		if want := traceparentOracle(tp); (err == nil) != want {
			t.Fatalf("parseTraceparent(%q) error = %v, grammar says valid = %v", tp, err, want)
		}
		if err == nil {
			out := formatTraceparent(c)
			if !strings.HasPrefix(trimOWS(tp)[2:], out[2:53]) || !traceparentOracle(out) {
				t.Fatalf("parseTraceparent(%q) then format = %q", tp, out)
			}
		}
		checkStable(t, http.Header{HeaderTraceparent: {tp}, HeaderTracestate: {ts}})
	})
}

func FuzzTracestate(f *testing.F) {
	for _, s := range [][2]string{
		{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", ""},
		{"foo=1 \t , \t bar=2", "baz=3"},
		{"a@b=c,,", " "},
		{"foo=1", "foo=2"},
		{"foo=1,bar=2,foo=3", " foo=4"},
		{"foo@=1,@bar=2", ""},
		{"t@v@w=1", "1a@_=2"},
		{"foo=bar=baz", ""},
		{"foo= 1", "x=\x7e"},
		{strings.Repeat("a,", 40), ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		fields := []string{a, b}
		got, err := parseTracestate(fields)
		want, kept := tracestateOracle(fields)
		if (err == nil) != want {
			t.Fatalf("parseTracestate(%q) error = %v, grammar says valid = %v", fields, err, want)
		}
		if err == nil && got != kept {
			t.Fatalf("parseTracestate(%q) = %q, want %q", fields, got, kept)
		}
		if err == nil {
			// Canonical: reparsing gives the same list, without OWS or empty members.
			again, err := parseTracestate([]string{got})
			if err != nil || again != got || strings.Contains(got, ",,") || strings.Contains(got, ", ") || got != trimOWS(got) {
				t.Fatalf("parseTracestate(%q) = %q, not canonical (%q, %v)", fields, got, again, err)
			}
		}
		checkStable(t, http.Header{HeaderTraceparent: {tpValid}, HeaderTracestate: fields})
	})
}

func FuzzB3Single(f *testing.F) {
	for _, s := range []string{
		b3Trace + "-" + b3Span + "-1-" + b3Parent,
		b3Trace + "-" + b3Span + "-d",
		b3Trace64 + "-" + b3Span,
		b3Trace64 + "-" + b3Span + "-0-" + b3Parent,
		"0", "1", "d", "", "x",
		strings.Repeat("0", 16) + "-" + b3Span + "-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		_, err := parseB3Single([]string{v})
		if want := b3SingleOracle(v); (err == nil) != want {
			t.Fatalf("parseB3Single(%q) error = %v, grammar says valid = %v", v, err, want)
		}
		checkStable(t, http.Header{HeaderB3: {v}})
	})
}

func FuzzB3Multi(f *testing.F) {
	f.Add(b3Trace, b3Span, b3Parent, "1", "", uint8(0b01111))
	f.Add(b3Trace64, b3Span, "", "true", "1", uint8(0b11011))
	f.Add("", "", "", "0", "", uint8(0b01000))
	f.Add("", "", "", "", "1", uint8(0b10000))
	f.Add(b3Trace, "", "", "1", "", uint8(0b01001))
	f.Add(b3Trace, b3Span, "", "yes", "2", uint8(0b11011))
	f.Fuzz(func(t *testing.T, traceID, spanID, parentID, sampled, flags string, present uint8) {
		h := http.Header{}
		for i, kv := range [...][2]string{
			{HeaderB3TraceID, traceID}, {HeaderB3SpanID, spanID}, {HeaderB3ParentID, parentID},
			{HeaderB3Sampled, sampled}, {HeaderB3Flags, flags},
		} {
			if present&(1<<i) != 0 {
				h[kv[0]] = []string{kv[1]}
			}
		}
		c, err := parseB3Multi(h)
		if err == nil && c.TraceID.IsValid() {
			if !reB3Single.MatchString(trimOWS(traceID)+"-"+trimOWS(spanID)) || !c.SpanID.IsValid() {
				t.Fatalf("parseB3Multi(%q) accepted bad ids: %+v", h, c)
			}
		}
		checkStable(t, h)
	})
}

// FuzzExtract mixes every header, so the priority rules meet malformed input.
func FuzzExtract(f *testing.F) {
	f.Add(tpValid, "a=1", b3Trace64+"-"+b3Span+"-d", b3Trace, b3Span, "0")
	f.Add("garbage", "a=1,a=2", "0", "", "", "1")
	f.Add("", "", "", b3Trace, b3Span, "")
	f.Fuzz(func(t *testing.T, tp, ts, b3, traceID, spanID, sampled string) {
		h := http.Header{}
		for _, kv := range [...][2]string{
			{HeaderTraceparent, tp}, {HeaderTracestate, ts}, {HeaderB3, b3},
			{HeaderB3TraceID, traceID}, {HeaderB3SpanID, spanID}, {HeaderB3Sampled, sampled},
		} {
			if kv[1] != "" {
				h[kv[0]] = []string{kv[1]}
			}
		}
		checkStable(t, h)
	})
}
