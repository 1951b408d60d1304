package spans

import (
	"errors"
	"strings"
	"testing"
)

const (
	tpTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	tpParent = "00f067aa0ba902b7"
	tpValid  = "00-" + tpTrace + "-" + tpParent + "-01"
)

func traceID(t testing.TB, s string) TraceID {
	t.Helper()
	var id TraceID
	if !decodeHex(id[:], s) {
		t.Fatalf("bad test trace id %q", s)
	}
	return id
}

func spanID(t testing.TB, s string) SpanID {
	t.Helper()
	var id SpanID
	if !decodeHex(id[:], s) {
		t.Fatalf("bad test span id %q", s)
	}
	return id
}

func TestParseTraceparent(t *testing.T) {
	tp := func(version, trace, parent, flags string) string {
		return version + "-" + trace + "-" + parent + "-" + flags
	}
	tests := []struct {
		name    string
		in      string
		err     error // nil: valid
		sampled bool
		random  bool
	}{
		{name: "sampled", in: tpValid, sampled: true},
		{name: "not sampled", in: tp("00", tpTrace, tpParent, "00")},
		{name: "random and sampled", in: tp("00", tpTrace, tpParent, "03"), sampled: true, random: true},
		{name: "random only", in: tp("00", tpTrace, tpParent, "02"), random: true},
		{name: "unknown flags ignored", in: tp("00", tpTrace, tpParent, "09"), sampled: true},
		{name: "all flags", in: tp("00", tpTrace, tpParent, "ff"), sampled: true, random: true},
		{name: "optional whitespace", in: " \t" + tpValid + "\t ", sampled: true},
		{name: "higher version, same length", in: tp("cc", tpTrace, tpParent, "01"), sampled: true},
		{name: "higher version, more fields", in: tp("cc", tpTrace, tpParent, "01") + "-what-the-future-will-be-like", sampled: true},
		{name: "higher version, trailing dash", in: tp("01", tpTrace, tpParent, "00") + "-"},
		{name: "version fe", in: tp("fe", tpTrace, tpParent, "01"), sampled: true},

		{name: "empty", in: "", err: errTraceparentSize},
		{name: "whitespace only", in: "  ", err: errTraceparentSize},
		{name: "version ff", in: tp("ff", tpTrace, tpParent, "01"), err: errVersionFF},
		{name: "version ff, longer", in: tp("ff", tpTrace, tpParent, "01") + "-x", err: errVersionFF},
		{name: "version 00 too long", in: tpValid + "-what-the-future-will-be-like", err: errTraceparentSize},
		{name: "version 00 trailing dot", in: tpValid + ".", err: errTraceparentSize},
		{name: "version 00 trailing dash", in: tpValid + "-", err: errTraceparentSize},
		{name: "higher version not followed by dash", in: tp("cc", tpTrace, tpParent, "01") + ".what-the-future", err: errTraceparentShape},
		{name: "version too short", in: tp("0", tpTrace, tpParent, "01"), err: errTraceparentSize},
		{name: "version too long", in: tp("000", tpTrace, tpParent, "01"), err: errVersion},
		{name: "version illegal char", in: tp(".0", tpTrace, tpParent, "01"), err: errVersion},
		{name: "version illegal char 2", in: tp("0.", tpTrace, tpParent, "01"), err: errVersion},
		{name: "version upper case", in: tp("0A", tpTrace, tpParent, "01"), err: errVersion},
		{name: "trace id upper case", in: tp("00", strings.ToUpper(tpTrace), tpParent, "01"), err: errHex},
		{name: "trace id illegal char", in: tp("00", "4bf92f3577b34da6a3ce929d0e0e473g", tpParent, "01"), err: errHex},
		{name: "trace id too short", in: tp("00", tpTrace[1:], tpParent, "01"), err: errTraceparentSize},
		{name: "trace id one short, parent one long", in: tp("00", tpTrace[1:], tpParent+"0", "01"), err: errTraceparentShape},
		{name: "trace id all zero", in: tp("00", strings.Repeat("0", 32), tpParent, "01"), err: errZeroTraceID},
		{name: "parent id upper case", in: tp("00", tpTrace, strings.ToUpper(tpParent), "01"), err: errHex},
		{name: "parent id illegal char", in: tp("00", tpTrace, "00f067aa0ba902bz", "01"), err: errHex},
		{name: "parent id all zero", in: tp("00", tpTrace, strings.Repeat("0", 16), "01"), err: errZeroSpanID},
		{name: "flags illegal char", in: tp("00", tpTrace, tpParent, ".0"), err: errHex},
		{name: "flags illegal char 2", in: tp("00", tpTrace, tpParent, "0."), err: errHex},
		{name: "flags upper case", in: tp("00", tpTrace, tpParent, "0A"), err: errHex},
		{name: "flags overflow", in: tp("00", tpTrace, tpParent, "001"), err: errTraceparentSize},
		{name: "flags missing", in: "00-" + tpTrace + "-" + tpParent + "-", err: errTraceparentSize},
		{name: "wrong delimiter", in: "00_" + tpTrace + "-" + tpParent + "-01", err: errVersion},
		{name: "wrong delimiter 2", in: "00-" + tpTrace + "_" + tpParent + "-01", err: errTraceparentShape},
		{name: "wrong delimiter 3", in: "00-" + tpTrace + "-" + tpParent + "_01", err: errTraceparentShape},
		{name: "inner whitespace", in: "00- " + tpTrace[1:] + "-" + tpParent + "-01", err: errHex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseTraceparent(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("parseTraceparent(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if tt.err != nil {
				if c != (Context{}) {
					t.Errorf("rejected header left a context: %+v", c)
				}
				return
			}
			want := Context{TraceID: traceID(t, tpTrace), SpanID: spanID(t, tpParent), Sampled: tt.sampled, Random: tt.random}
			if c != want {
				t.Errorf("parseTraceparent(%q) = %+v, want %+v", tt.in, c, want)
			}
		})
	}
}

func TestFormatTraceparent(t *testing.T) {
	base := Context{TraceID: traceID(t, tpTrace), SpanID: spanID(t, tpParent)}
	tests := []struct {
		name string
		c    func(Context) Context
		want string
	}{
		{"unsampled", func(c Context) Context { return c }, "00-" + tpTrace + "-" + tpParent + "-00"},
		{"sampled", func(c Context) Context { c.Sampled = true; return c }, "00-" + tpTrace + "-" + tpParent + "-01"},
		{"random", func(c Context) Context { c.Random = true; return c }, "00-" + tpTrace + "-" + tpParent + "-02"},
		{"debug is sampled", func(c Context) Context { c.Debug, c.Random = true, true; return c }, "00-" + tpTrace + "-" + tpParent + "-03"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatTraceparent(tt.c(base)); got != tt.want {
				t.Errorf("formatTraceparent = %q, want %q", got, tt.want)
			}
		})
	}
}

// A higher version is written back as 00 with the unknown flag bits cleared.
func TestTraceparentDowngrade(t *testing.T) {
	c, err := parseTraceparent("cc-" + tpTrace + "-" + tpParent + "-ff-future")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := formatTraceparent(c), "00-"+tpTrace+"-"+tpParent+"-03"; got != want {
		t.Errorf("formatTraceparent = %q, want %q", got, want)
	}
}

func TestParseTracestate(t *testing.T) {
	allKeyChars := "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
	var allValueChars strings.Builder
	for c := byte(0x20); c <= 0x7e; c++ {
		if c != ',' && c != '=' {
			allValueChars.WriteByte(c)
		}
	}
	members := func(n int) string {
		m := make([]string, n)
		for i := range m {
			m[i] = "k" + strings.Repeat("x", i) + "=v"
		}
		return strings.Join(m, ",")
	}
	tests := []struct {
		name string
		in   []string
		want string
		err  error
	}{
		{name: "none", in: nil, want: ""},
		{name: "empty field", in: []string{""}, want: ""},
		{name: "whitespace and commas only", in: []string{" , \t,"}, want: ""},
		{name: "one member", in: []string{"foo=1"}, want: "foo=1"},
		{name: "two members", in: []string{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}, want: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{name: "two fields combined", in: []string{"foo=1", "bar=2"}, want: "foo=1,bar=2"},
		{name: "empty second field", in: []string{"foo=1", ""}, want: "foo=1"},
		{name: "empty first field", in: []string{"", "foo=1"}, want: "foo=1"},
		{name: "optional whitespace", in: []string{"foo=1 \t , \t bar=2, \t baz=3"}, want: "foo=1,bar=2,baz=3"},
		{name: "empty members", in: []string{",foo=1,,bar=2,"}, want: "foo=1,bar=2"},
		{name: "leading space kept in value", in: []string{"foo= 1"}, want: "foo= 1"},
		{name: "all key chars", in: []string{allKeyChars[:26] + allKeyChars + "=1"}, want: allKeyChars[:26] + allKeyChars + "=1"},
		{name: "all value chars", in: []string{"foo=" + allValueChars.String()}, want: "foo=" + allValueChars.String()},
		{name: "multi-tenant key", in: []string{"tenant@vendor=1"}, want: "tenant@vendor=1"},
		{name: "tenant starting with a digit", in: []string{"0tenant@v=1"}, want: "0tenant@v=1"},
		{name: "all multi-tenant chars", in: []string{allKeyChars + "@a" + allKeyChars[:13] + "=1"}, want: allKeyChars + "@a" + allKeyChars[:13] + "=1"},
		{name: "longest key", in: []string{strings.Repeat("a", 256) + "=1"}, want: strings.Repeat("a", 256) + "=1"},
		{name: "longest key, 256 with an at sign", in: []string{strings.Repeat("t", 241) + "@" + strings.Repeat("s", 14) + "=1"}, want: strings.Repeat("t", 241) + "@" + strings.Repeat("s", 14) + "=1"},
		{name: "longest key among others", in: []string{"foo=1", strings.Repeat("z", 256) + "=1"}, want: "foo=1," + strings.Repeat("z", 256) + "=1"},
		{name: "longest value", in: []string{"foo=" + strings.Repeat("v", 256)}, want: "foo=" + strings.Repeat("v", 256)},
		{name: "32 members", in: []string{members(32)}, want: members(32)},
		{name: "32 members and empty ones", in: []string{members(32) + ",,", " "}, want: members(32)},
		{name: "same value, different keys", in: []string{"foo=1,bar=1"}, want: "foo=1,bar=1"},

		// Level 2 (§3.3.2.2.1): key = ( lcalpha / DIGIT ) 0*255 ( keychar ), and
		// keychar includes "@". Level 1's tenant@system split, with its 241 and
		// 14 character limits, is gone.
		{name: "L2: key starting with a digit", in: []string{"1foo=1"}, want: "1foo=1"},
		{name: "L2: at sign last", in: []string{"foo@=1,bar=2"}, want: "foo@=1,bar=2"},
		{name: "L2: two at signs in a row", in: []string{"foo@@bar=1,bar=2"}, want: "foo@@bar=1,bar=2"},
		{name: "L2: two at signs", in: []string{"foo@bar@baz=1,bar=2"}, want: "foo@bar@baz=1,bar=2"},
		{name: "L2: digit after the at sign", in: []string{"foo@1bar=1"}, want: "foo@1bar=1"},
		{name: "L2: underscore after the at sign", in: []string{"foo@_bar=1"}, want: "foo@_bar=1"},
		{name: "L2: 242 characters before the at sign", in: []string{strings.Repeat("t", 242) + "@s=1"}, want: strings.Repeat("t", 242) + "@s=1"},
		{name: "L2: 256 characters, 250 before the at sign", in: []string{strings.Repeat("t", 250) + "@sssss=1"}, want: strings.Repeat("t", 250) + "@sssss=1"},
		{name: "L2: 15 characters after the at sign", in: []string{"t@" + strings.Repeat("s", 15) + "=1"}, want: "t@" + strings.Repeat("s", 15) + "=1"},

		// Duplicate keys keep the tracestate: the first (left-most, most recent)
		// entry of a key stays, later ones are dropped, so what goes on holds one
		// entry per key as the spec asks of senders.
		{name: "duplicate key, same value", in: []string{"foo=1,foo=1"}, want: "foo=1"},
		{name: "duplicate key, other value", in: []string{"foo=1,foo=2"}, want: "foo=1"},
		{name: "duplicate key among others", in: []string{"foo=1,bar=2,foo=3,baz=4"}, want: "foo=1,bar=2,baz=4"},
		{name: "duplicate key across fields", in: []string{"foo=1", "bar=2,foo=2"}, want: "foo=1,bar=2"},
		{name: "duplicate key in two fields", in: []string{"foo=1", "foo=1"}, want: "foo=1"},
		{name: "duplicate multi-tenant key", in: []string{"t@v=1,t@v=2"}, want: "t@v=1"},

		{name: "no equals sign", in: []string{"foo"}, err: errTracestateMember},
		{name: "empty value", in: []string{"foo="}, err: errTracestateValue},
		{name: "empty value among others", in: []string{"foo=,bar=3"}, err: errTracestateValue},
		{name: "empty key", in: []string{"=1"}, err: errTracestateKey},
		{name: "space before equals", in: []string{"foo =1"}, err: errTracestateKey},
		{name: "upper-case key", in: []string{"FOO=1"}, err: errTracestateKey},
		{name: "dot in key", in: []string{"foo.bar=1"}, err: errTracestateKey},
		{name: "key starting with an at sign", in: []string{"@foo=1,bar=2"}, err: errTracestateKey},
		{name: "key starting with an underscore", in: []string{"_foo@bar=1"}, err: errTracestateKey},
		{name: "key starting with a dash", in: []string{"-foo=1"}, err: errTracestateKey},
		{name: "upper case after the at sign", in: []string{"foo@Bar=1"}, err: errTracestateKey},
		{name: "key too long", in: []string{strings.Repeat("a", 257) + "=1"}, err: errTracestateKey},
		{name: "key too long, among others", in: []string{"foo=1", strings.Repeat("z", 257) + "=1"}, err: errTracestateKey},
		{name: "key too long, 257 with an at sign", in: []string{strings.Repeat("t", 241) + "@" + strings.Repeat("s", 15) + "=1"}, err: errTracestateKey},
		{name: "equals in value", in: []string{"foo=bar=baz"}, err: errTracestateValue},
		{name: "tab in value", in: []string{"foo=a\tb"}, err: errTracestateValue},
		{name: "DEL in value", in: []string{"foo=a\x7f"}, err: errTracestateValue},
		{name: "non-ASCII value", in: []string{"foo=é"}, err: errTracestateValue},
		{name: "value too long", in: []string{"foo=" + strings.Repeat("v", 257)}, err: errTracestateValue},
		{name: "33 members", in: []string{members(33)}, err: errTracestateCount},
		{name: "33 members, one a duplicate", in: []string{members(32) + ",k=2"}, err: errTracestateCount},
		{name: "33 members across fields", in: []string{members(20), "z" + strings.ReplaceAll(members(13), ",", ",z")}, err: errTracestateCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTracestate(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("parseTracestate(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if got != tt.want {
				t.Errorf("parseTracestate(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// The common case, one canonical field, is returned as it is: no allocation.
func TestParseTracestateCanonicalDoesNotAllocate(t *testing.T) {
	in := []string{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}
	if n := testing.AllocsPerRun(100, func() { _, _ = parseTracestate(in) }); n != 0 {
		t.Errorf("parseTracestate allocates %v times, want 0", n)
	}
}
