package spans

import (
	"errors"
	"net/http"
	"slices"
	"strings"
)

// Why a W3C header was rejected. Extract only needs "rejected", but the tests
// check the reason, so a case cannot pass for the wrong one. They are static
// values: rejecting a header allocates nothing.
var (
	errAbsent           = errors.New("header absent")
	errRepeated         = errors.New("header repeated")
	errTraceparentSize  = errors.New("traceparent has the wrong length")
	errTraceparentShape = errors.New("traceparent is not version-traceid-parentid-flags")
	errVersion          = errors.New("traceparent version is not 2 lower-case hex digits")
	errVersionFF        = errors.New("traceparent version ff is forbidden")
	errHex              = errors.New("id or flags are not lower-case hex")
	errZeroTraceID      = errors.New("trace id is all zeroes")
	errZeroSpanID       = errors.New("span id is all zeroes")
	errTracestateKey    = errors.New("tracestate key is malformed")
	errTracestateValue  = errors.New("tracestate value is malformed")
	errTracestateMember = errors.New("tracestate member has no '='")
	errTracestateCount  = errors.New("tracestate has more than 32 members")
)

const (
	traceparentLen   = 55 // version 00: 2+1+32+1+16+1+2
	maxTracestateLen = 32 // list members
)

// extractW3C reads traceparent and, only when it is valid, tracestate (the spec
// forbids parsing tracestate after a traceparent failure, and an invalid tracestate
// must not affect traceparent).
func extractW3C(h http.Header) (Context, error) {
	v, err := single(h[HeaderTraceparent])
	if err != nil {
		return Context{}, err
	}
	c, err := parseTraceparent(v)
	if err != nil {
		return Context{}, err
	}
	if ts, err := parseTracestate(h[HeaderTracestate]); err == nil {
		c.TraceState = ts
	}
	return c, nil
}

// single returns the only field of a header that must not be repeated.
func single(vals []string) (string, error) {
	switch len(vals) {
	case 0:
		return "", errAbsent
	case 1:
		return vals[0], nil
	default:
		return "", errRepeated
	}
}

// parseTraceparent parses a traceparent value as Trace Context Level 2 says: version
// 00 is exactly 55 characters; a higher version (not ff) is at least 55 and its
// version-00 fields are read, the 56th character, if any, being a dash. Only the
// sampled and random flags are kept. Optional whitespace around the value is
// ignored, as the W3C test suite expects.
func parseTraceparent(v string) (Context, error) {
	v = trimOWS(v)
	if len(v) < traceparentLen {
		return Context{}, errTraceparentSize
	}
	version, ok := hexByte(v[0], v[1])
	if !ok || v[2] != '-' {
		return Context{}, errVersion
	}
	switch {
	case version == 0xff:
		return Context{}, errVersionFF
	case version == 0 && len(v) != traceparentLen:
		return Context{}, errTraceparentSize
	case len(v) > traceparentLen && v[traceparentLen] != '-':
		return Context{}, errTraceparentShape
	}
	if v[35] != '-' || v[52] != '-' {
		return Context{}, errTraceparentShape
	}
	var c Context
	if !decodeHex(c.TraceID[:], v[3:35]) || !decodeHex(c.SpanID[:], v[36:52]) {
		return Context{}, errHex
	}
	flags, ok := hexByte(v[53], v[54])
	if !ok {
		return Context{}, errHex
	}
	if !c.TraceID.IsValid() {
		return Context{}, errZeroTraceID
	}
	if !c.SpanID.IsValid() {
		return Context{}, errZeroSpanID
	}
	c.Sampled = flags&FlagSampled != 0
	c.Random = flags&FlagRandom != 0
	return c, nil
}

// formatTraceparent writes c as a version 00 traceparent.
func formatTraceparent(c Context) string {
	var b [traceparentLen]byte
	buf := append(b[:0], "00-"...)
	buf = appendHex(buf, c.TraceID[:])
	buf = append(buf, '-')
	buf = appendHex(buf, c.SpanID[:])
	buf = append(buf, '-')
	buf = appendHex(buf, []byte{c.Flags()})
	return string(buf)
}

// parseTracestate validates the tracestate fields of a request, combined as
// RFC 9110 combines repeated fields, and returns the list to propagate: the single
// field itself when it is already in canonical form (no empty members, no optional
// whitespace, no repeated key), so the common case allocates nothing; else the
// members joined by ",". Empty and whitespace-only members are allowed and do
// not count towards the 32-member limit. No tracestate, or one with no members,
// gives "".
//
// Keys follow the Level 2 grammar (§3.3.2.2.1): a lower-case letter or digit,
// then up to 255 of lcalpha, digit, "_-*/@". Level 1's tenant@system form is a
// special case of it. Values are 1 to 256 printable ASCII characters except ","
// and "=", not ending in a space.
//
// A key that appears again keeps its first entry and loses the later ones: the
// spec allows one entry per key, and the left-most is the most recent position
// (a vendor moves the entry it updates to the front). Rejecting the whole list
// would lose every other vendor's entry over one sender's mistake. The 32-member
// limit counts the members as they arrived, repeated keys included.
func parseTracestate(vals []string) (string, error) {
	if len(vals) == 0 {
		return "", nil
	}
	return parseTracestateMembers(vals)
}

// parseTracestateMembers is parseTracestate's work, in a function of its own:
// its member arrays (1.3 KB of stack) must not be reserved on every request's
// goroutine stack, most of which carry no tracestate. Stacks grow by
// doubling, and a few hundred bytes more on the deepest path double the
// memory of every connection's goroutine.
//
//go:noinline
func parseTracestateMembers(vals []string) (string, error) {
	var members, keys [maxTracestateLen]string
	n, total := 0, 0
	canonical := len(vals) == 1
	for _, field := range vals {
		for {
			m, rest, more := strings.Cut(field, ",")
			t := trimOWS(m)
			if t != m || t == "" {
				canonical = false
			}
			if t != "" {
				key, value, found := strings.Cut(t, "=")
				if !found {
					return "", errTracestateMember
				}
				if !validTracestateKey(key) {
					return "", errTracestateKey
				}
				if !validTracestateValue(value) {
					return "", errTracestateValue
				}
				if total++; total > maxTracestateLen {
					return "", errTracestateCount
				}
				if slices.Contains(keys[:n], key) {
					canonical = false
				} else {
					members[n], keys[n] = t, key
					n++
				}
			}
			if !more {
				break
			}
			field = rest
		}
	}
	switch {
	case n == 0:
		return "", nil
	case canonical:
		return vals[0], nil
	}
	size := n - 1
	for _, m := range members[:n] {
		size += len(m)
	}
	var b strings.Builder
	b.Grow(size)
	for i, m := range members[:n] {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m)
	}
	return b.String(), nil
}

func validTracestateKey(key string) bool {
	return len(key) > 0 && len(key) <= 256 && (isLCAlpha(key[0]) || isDigit(key[0])) && allKeyChars(key[1:])
}

func validTracestateValue(v string) bool {
	if len(v) == 0 || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

func allKeyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '*' && c != '/' && c != '@' {
			return false
		}
	}
	return true
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }

// trimOWS removes RFC 9110 optional whitespace (spaces and tabs) around s.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// unhex maps a lower-case hex digit to its value and anything else to 0xff: both
// W3C and B3 require lower-case ids.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

func hexByte(hi, lo byte) (byte, bool) {
	h, l := unhex[hi], unhex[lo]
	return h<<4 | l, h < 16 && l < 16
}

// decodeHex decodes exactly 2*len(dst) lower-case hex digits from s into dst.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		b, ok := hexByte(s[2*i], s[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, src []byte) []byte {
	for _, b := range src {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0x0f])
	}
	return dst
}
