package spans

import (
	"errors"
	"net/http"
)

var (
	errB3Shape    = errors.New("b3 is not traceid-spanid[-state[-parentid]] or a bare state")
	errB3State    = errors.New("b3 sampling state is not 0, 1 or d")
	errB3TraceID  = errors.New("b3 trace id is not 16 or 32 lower-case hex digits")
	errB3Sampled  = errors.New("X-B3-Sampled is not 1, 0, true or false")
	errB3Flags    = errors.New("X-B3-Flags is not 1 or 0")
	errB3Partial  = errors.New("X-B3 ids need both X-B3-TraceId and X-B3-SpanId")
	errB3Nothing  = errors.New("no X-B3 header")
	b3StateValues = [...]string{"0", "1", "d"} // indexed by b3State
)

// parseB3Single parses the b3 header: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]
// or a bare sampling state (0, 1, d). A context without ids carries only the
// decision; ids without a state are Deferred. The parent span id is validated but
// not kept: we always send our own span as the parent and omit it.
func parseB3Single(vals []string) (Context, error) {
	v, err := single(vals)
	if err != nil {
		return Context{}, err
	}
	v = trimOWS(v)
	var c Context
	if len(v) == 1 {
		return c, c.setB3State(v[0])
	}
	traceLen := 32
	if len(v) > 16 && v[16] == '-' {
		traceLen = 16
	}
	// Lengths: trace, '-', 16 span, then optionally "-s" and "-" 16 parent.
	ids := traceLen + 1 + 16
	switch len(v) {
	case ids, ids + 2, ids + 2 + 17:
	default:
		return Context{}, errB3Shape
	}
	if v[traceLen] != '-' {
		return Context{}, errB3Shape
	}
	if err := c.setB3IDs(v[:traceLen], v[traceLen+1:ids]); err != nil {
		return Context{}, err
	}
	if len(v) == ids {
		c.Deferred = true
		return c, nil
	}
	if v[ids] != '-' {
		return Context{}, errB3Shape
	}
	if err := c.setB3State(v[ids+1]); err != nil {
		return Context{}, err
	}
	if len(v) > ids+2 {
		if v[ids+2] != '-' {
			return Context{}, errB3Shape
		}
		if err := checkParentID(v[ids+3:]); err != nil {
			return Context{}, err
		}
	}
	return c, nil
}

// parseB3Multi parses the X-B3-* headers. Either both X-B3-TraceId and X-B3-SpanId
// are present and valid, or neither of them nor X-B3-ParentSpanId is, and then
// X-B3-Sampled or X-B3-Flags: 1 alone is a bare decision. X-B3-Flags: 1 (debug)
// implies sampled whatever X-B3-Sampled says. Any malformed or repeated X-B3
// header rejects the whole set.
func parseB3Multi(h http.Header) (Context, error) {
	traceID, tErr := single(h[HeaderB3TraceID])
	spanID, sErr := single(h[HeaderB3SpanID])
	parentID, pErr := single(h[HeaderB3ParentID])
	sampled, smErr := single(h[HeaderB3Sampled])
	flags, fErr := single(h[HeaderB3Flags])
	for _, err := range [...]error{tErr, sErr, pErr, smErr, fErr} {
		if err == errRepeated {
			return Context{}, err
		}
	}
	var c Context
	switch {
	case tErr == nil && sErr == nil:
		if err := c.setB3IDs(trimOWS(traceID), trimOWS(spanID)); err != nil {
			return Context{}, err
		}
		if pErr == nil {
			if err := checkParentID(trimOWS(parentID)); err != nil {
				return Context{}, err
			}
		}
	case tErr == nil || sErr == nil || pErr == nil:
		return Context{}, errB3Partial
	case smErr != nil && fErr != nil:
		return Context{}, errB3Nothing
	}
	c.Deferred = true
	if smErr == nil {
		switch trimOWS(sampled) {
		case "1", "true":
			c.Sampled = true
		case "0", "false":
		default:
			return Context{}, errB3Sampled
		}
		c.Deferred = false
	}
	if fErr == nil {
		switch trimOWS(flags) {
		case "1":
			c.Debug, c.Sampled, c.Deferred = true, true, false
		case "0":
		default:
			return Context{}, errB3Flags
		}
	}
	if c.Deferred && !c.TraceID.IsValid() {
		// X-B3-Flags: 0 alone: no ids and no decision, nothing to propagate.
		return Context{}, errB3Nothing
	}
	return c, nil
}

// setB3IDs decodes a 16- or 32-digit trace id and a 16-digit span id.
func (c *Context) setB3IDs(traceID, spanID string) error {
	switch len(traceID) {
	case 32:
		if !decodeHex(c.TraceID[:], traceID) {
			return errHex
		}
	case 16:
		if !decodeHex(c.TraceID[8:], traceID) {
			return errHex
		}
		c.B3TraceID64 = true
	default:
		return errB3TraceID
	}
	if !decodeHex(c.SpanID[:], spanID) {
		return errHex
	}
	if !c.TraceID.IsValid() {
		return errZeroTraceID
	}
	if !c.SpanID.IsValid() {
		return errZeroSpanID
	}
	return nil
}

func (c *Context) setB3State(s byte) error {
	switch s {
	case '0':
	case '1':
		c.Sampled = true
	case 'd':
		c.Sampled, c.Debug = true, true
	default:
		return errB3State
	}
	return nil
}

// checkParentID validates a B3 parent span id we will not keep. An all-zero one is
// accepted: some clients send it for "no parent", and rejecting it would break the
// trace over a field we drop anyway.
func checkParentID(s string) error {
	var id SpanID
	if !decodeHex(id[:], s) {
		return errHex
	}
	return nil
}

type b3State uint8

const (
	b3Deny b3State = iota
	b3Accept
	b3Debug
	b3Defer
)

func (c Context) b3State() b3State {
	switch {
	case c.Debug:
		return b3Debug
	case c.Deferred:
		return b3Defer
	case c.Sampled:
		return b3Accept
	}
	return b3Deny
}

// appendB3TraceID writes the trace id as 16 digits when it arrived that way and
// still fits, else as 32.
func appendB3TraceID(dst []byte, c Context) []byte {
	if c.B3TraceID64 && c.TraceID.fits64() {
		return appendHex(dst, c.TraceID[8:])
	}
	return appendHex(dst, c.TraceID[:])
}

func (t TraceID) fits64() bool { return [8]byte(t[:8]) == [8]byte{} }

func injectB3Single(h http.Header, c Context) {
	state := c.b3State()
	if !c.IsValid() {
		if state != b3Defer {
			h[HeaderB3] = []string{b3StateValues[state]}
		}
		return
	}
	var b [32 + 1 + 16 + 2]byte
	buf := appendB3TraceID(b[:0], c)
	buf = append(buf, '-')
	buf = appendHex(buf, c.SpanID[:])
	if state != b3Defer {
		buf = append(buf, '-', b3StateValues[state][0])
	}
	h[HeaderB3] = []string{string(buf)}
}

func injectB3Multi(h http.Header, c Context) {
	if c.IsValid() {
		var b [32]byte
		h[HeaderB3TraceID] = []string{string(appendB3TraceID(b[:0], c))}
		h[HeaderB3SpanID] = []string{string(appendHex(b[:0], c.SpanID[:]))}
	}
	// B3 says debug implies accept, so X-B3-Sampled is not sent alongside it.
	switch c.b3State() {
	case b3Debug:
		h[HeaderB3Flags] = []string{"1"}
	case b3Accept:
		h[HeaderB3Sampled] = []string{"1"}
	case b3Deny:
		h[HeaderB3Sampled] = []string{"0"}
	}
}
