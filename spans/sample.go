package spans

import (
	"encoding/binary"
	"net/http"
	"strconv"
)

func (s *Sampler) decide(h http.Header, p Policy) (Context, Outcome) {
	override, hasOverride := overrideRate(h[OverrideHeader])
	delete(h, OverrideHeader)

	c, ok := Extract(h)
	decided := c.Formats != 0 && !c.Deferred // a decision arrived, with or without ids
	bareDebug := !ok && c.Debug              // B3 debug asking for a new trace
	if !ok {
		// Restart: keep only a bare B3 decision and the formats it came in.
		c = Context{
			TraceID: NewTraceID(),
			Random:  true,
			Sampled: c.Sampled,
			Debug:   c.Debug,
			Formats: c.Formats,
		}
	}
	c.Deferred = false
	if p.Untrusted {
		out := OutcomeNone
		if decided && c.Sampled || hasOverride && override > 0 {
			out = OutcomeUntrusted // c.Debug implies c.Sampled
		}
		c.Debug = false
		c.Sampled = s.sampledAtRate(c.TraceID)
		return c, out
	}

	// The decision without forcing: the parent's, else the rate. A bare debug
	// replaces the B3 sampling state, so there is no parent's decision under it.
	sampled := s.sampledAtRate(c.TraceID)
	if decided && !bareDebug {
		sampled = c.Sampled
	}
	force := bareDebug || hasOverride && traceIDBelow(c.TraceID, thresholdFor(override))
	out := OutcomeNone
	if force && !sampled {
		if p.Forced == nil || p.Forced.Allow() {
			sampled, out = true, OutcomeForced
		} else {
			c.Debug, out = false, OutcomeRefused
		}
	}
	c.Sampled = sampled
	return c, out
}

// sampledAtRate applies the sampler's rate to a trace; a nil sampler samples
// nothing.
func (s *Sampler) sampledAtRate(t TraceID) bool {
	return s != nil && traceIDBelow(t, s.threshold)
}

// overrideRate parses the first OverrideHeader field as a probability. Anything
// that is not a float in [0, 1] is ignored rather than clamped: a typo must not
// turn into "trace everything".
func overrideRate(vals []string) (float64, bool) {
	if len(vals) == 0 {
		return 0, false
	}
	p, err := strconv.ParseFloat(trimOWS(vals[0]), 64)
	if err != nil || !(p >= 0 && p <= 1) { // also rejects NaN
		return 0, false
	}
	return p, true
}

func clampRate(rate float64) float64 {
	switch {
	case rate > 1:
		return 1
	case rate >= 0:
		return rate
	}
	return 0 // negative or NaN
}

// thresholdFor turns a probability into the bound traceIDBelow compares with.
// 1 maps to 2^63, above every 63-bit value, so a rate of 1 samples everything and
// 0 maps to 0, which samples nothing.
func thresholdFor(rate float64) uint64 {
	return uint64(clampRate(rate) * (1 << 63))
}

// traceIDBelow is OpenTelemetry's TraceIDRatioBased test: the last 8 bytes of the
// trace id (the random part, also for 64-bit B3 ids) as a 63-bit number.
func traceIDBelow(t TraceID, threshold uint64) bool {
	return binary.BigEndian.Uint64(t[8:])>>1 < threshold
}

// Rate returns the rate at which s starts traces, after clamping to 0..1.
func (s *Sampler) Rate() float64 {
	if s == nil {
		return 0
	}
	return s.rate
}
