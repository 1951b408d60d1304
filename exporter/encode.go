package exporter

import (
	"math"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hoptrace/hoptrace/spans"
)

// encoder writes an OTLP ExportTraceServiceRequest in protobuf wire format
// straight from span records. Building go.opentelemetry.io/proto/otlp messages and
// marshalling them cost three quarters of the exporter's CPU (reflection-driven
// sizing and encoding of ~40 small messages per span); this does the same without
// allocating. The reference it is tested against is toResourceSpans in
// reference_test.go (encode_test.go decodes both and compares).
//
// It is a single append pass that also checks every string for UTF-8: a nested
// message's length is not known before its body is written, so openLen reserves
// room for it and closeLen fills it in afterwards. The room is the exact width
// wherever the size is cheap to predict (attributes, status) and a guess that
// holds for nearly every message elsewhere (spans, events, resources); a length
// that turns out shorter than its room is written as a padded varint (0x85 0x00
// for 5), which protobuf decoders accept, and a longer one moves the body up. A
// sizing pass first, as this encoder once did, took as long as this whole pass:
// the moves are rare and the padding costs a few bytes per resource.
//
// Field numbers are those of opentelemetry/proto/collector/trace/v1 and
// trace/v1, common/v1, resource/v1. Zero-valued scalar fields are omitted as
// proto3 does; oneof members (AnyValue) are always written.
type encoder struct {
	index  map[*spans.Resource]int32
	groups []encGroup
	group  []int32       // group of each span of the batch
	order  []*spans.Span // the batch, grouped by resource
	// built is where deferred spans are built, one at a time, just before
	// they are encoded (spans.Builder): its slices stay hot in this CPU's cache.
	built spans.Span
	// perSpan is the bytes per span of the last request, to size the next one's buffer.
	perSpan int
}

type encGroup struct {
	res      *spans.Resource
	spans    []*spans.Span // a window of order, or the batch when it is one group
	start, n int
}

// Field numbers.
const (
	fReqResourceSpans = 1

	fRSResource   = 1
	fRSScopeSpans = 2

	fResAttributes = 1

	fSSScope = 1
	fSSSpans = 2

	fScopeName = 1

	fSpanTraceID      = 1
	fSpanSpanID       = 2
	fSpanTraceState   = 3
	fSpanParentSpanID = 4
	fSpanName         = 5
	fSpanKind         = 6
	fSpanStart        = 7
	fSpanEnd          = 8
	fSpanAttributes   = 9
	fSpanEvents       = 11
	fSpanStatus       = 15
	fSpanFlags        = 16

	fEventTime       = 1
	fEventName       = 2
	fEventAttributes = 3

	fStatusMessage = 2
	fStatusCode    = 3

	fKVKey   = 1
	fKVValue = 2

	fAnyString = 1
	fAnyBool   = 2
	fAnyInt    = 3
	fAnyDouble = 4
)

// Room reserved for lengths that are not predicted. A ResourceSpans or
// ScopeSpans holds a whole batch, which must never move; 5 bytes count to 32 GiB.
// Spans and resources are mostly 128 bytes to 16 KiB long, events shorter.
const (
	groupLenRoom    = 5
	spanLenRoom     = 2
	resourceLenRoom = 2
	eventLenRoom    = 1
)

// scopeField is the ScopeSpans.scope field, the same in every request.
var scopeField = func() []byte {
	scope := protowire.AppendString(protowire.AppendTag(nil, fScopeName, protowire.BytesType), ScopeName)
	b := protowire.AppendTag(nil, fSSScope, protowire.BytesType)
	return protowire.AppendBytes(b, scope)
}()

// encode appends batch to b as an ExportTraceServiceRequest: one ResourceSpans
// per distinct *spans.Resource in order of first appearance, with one ScopeSpans
// holding the group's spans in batch order.
func (e *encoder) encode(b []byte, batch []*spans.Span) []byte {
	start := len(b)
	groups := e.groupByResource(batch)
	for i := range groups {
		g := &groups[i]
		var rs, res, ss int
		b, rs = openLen(b, fReqResourceSpans, groupLenRoom)
		b, res = openLen(b, fRSResource, resourceLenRoom)
		if g.res != nil {
			b = appendAttrs(b, fResAttributes, g.res.Attrs, false)
		}
		b = closeLen(b, res, resourceLenRoom)
		b, ss = openLen(b, fRSScopeSpans, groupLenRoom)
		b = append(b, scopeField...)
		for _, s := range g.spans {
			var sp int
			b, sp = openLen(b, fSSSpans, spanLenRoom)
			b = appendSpan(b, spans.Build(s, &e.built))
			b = closeLen(b, sp, spanLenRoom)
		}
		b = closeLen(b, ss, groupLenRoom)
		b = closeLen(b, rs, groupLenRoom)
	}
	if len(batch) > 0 {
		e.perSpan = (len(b) - start + len(batch) - 1) / len(batch)
	}
	return b
}

// sizeHint is a buffer size likely to hold a request of n spans.
func (e *encoder) sizeHint(n int) int {
	if e.perSpan == 0 {
		return n * 512
	}
	return n * e.perSpan
}

// release drops the encoder's references to the last batch's spans and resources,
// so that they can be collected while the batch is retried or the exporter idles.
func (e *encoder) release() {
	clear(e.order)
	clear(e.index)
	clear(e.groups)
	a, ev := e.built.Attrs, e.built.Events
	clear(a[:cap(a)])
	clear(ev[:cap(ev)])
	e.built = spans.Span{Attrs: a[:0], Events: ev[:0]}
}

// groupByResource groups batch by resource pointer: groups in order of first
// appearance, spans in batch order within a group.
func (e *encoder) groupByResource(batch []*spans.Span) []encGroup {
	if e.index == nil {
		e.index = make(map[*spans.Resource]int32)
	}
	clear(e.index)
	e.groups = e.groups[:0]
	e.group = grow(e.group, len(batch))
	// Spans of one pod tend to come in runs: look up only when the resource changes.
	var last *spans.Resource
	lastGroup := int32(-1)
	for i, s := range batch {
		if s.Resource != last || lastGroup < 0 {
			gi, ok := e.index[s.Resource]
			if !ok {
				gi = int32(len(e.groups))
				e.index[s.Resource] = gi
				e.groups = append(e.groups, encGroup{res: s.Resource})
			}
			last, lastGroup = s.Resource, gi
		}
		e.groups[lastGroup].n++
		e.group[i] = lastGroup
	}
	if len(e.groups) == 1 {
		e.groups[0].spans = batch
		return e.groups
	}
	off := 0
	for i := range e.groups {
		e.groups[i].start = off
		off += e.groups[i].n
		e.groups[i].n = 0 // counts again while placing
	}
	e.order = grow(e.order, len(batch))
	for i, s := range batch {
		g := &e.groups[e.group[i]]
		e.order[g.start+g.n] = s
		g.n++
	}
	for i := range e.groups {
		g := &e.groups[i]
		g.spans = e.order[g.start : g.start+g.n]
	}
	return e.groups
}

// key is the one-byte tag of fields 1 to 15.
func key(num protowire.Number, typ protowire.Type) byte { return byte(num)<<3 | byte(typ) }

func appendSpan(b []byte, s *spans.Span) []byte {
	b = append(b, key(fSpanTraceID, protowire.BytesType), byte(len(s.TraceID)))
	b = append(b, s.TraceID[:]...)
	b = append(b, key(fSpanSpanID, protowire.BytesType), byte(len(s.SpanID)))
	b = append(b, s.SpanID[:]...)
	b = appendString(b, fSpanTraceState, s.TraceState)
	if s.ParentID.IsValid() {
		b = append(b, key(fSpanParentSpanID, protowire.BytesType), byte(len(s.ParentID)))
		b = append(b, s.ParentID[:]...)
	}
	b = appendString(b, fSpanName, s.Name)
	if k := spanKind(s.Kind); k != 0 {
		b = append(b, key(fSpanKind, protowire.VarintType), byte(k))
	}
	if t := unixNano(s.Start); t != 0 {
		b = append(b, key(fSpanStart, protowire.Fixed64Type))
		b = protowire.AppendFixed64(b, t)
	}
	if t := unixNano(s.End); t != 0 {
		b = append(b, key(fSpanEnd, protowire.Fixed64Type))
		b = protowire.AppendFixed64(b, t)
	}
	b = appendAttrs(b, fSpanAttributes, s.Attrs, s.ASCII)
	for i := range s.Events {
		ev := &s.Events[i]
		var body int
		b, body = openLen(b, fSpanEvents, eventLenRoom)
		if t := unixNano(ev.Time); t != 0 {
			b = append(b, key(fEventTime, protowire.Fixed64Type))
			b = protowire.AppendFixed64(b, t)
		}
		if ev.Name != "" {
			b = appendStringChecked(b, fEventName, ev.Name, s.ASCII)
		}
		b = appendAttrs(b, fEventAttributes, ev.Attrs, s.ASCII)
		b = closeLen(b, body, eventLenRoom)
	}
	if s.Status != spans.StatusUnset || s.StatusMessage != "" {
		n := stringSize(fStatusMessage, s.StatusMessage)
		c := statusCode(s.Status)
		if c != 0 {
			n += 2
		}
		room := lenRoom(n)
		var body int
		b, body = openLen(b, fSpanStatus, room)
		b = appendString(b, fStatusMessage, s.StatusMessage)
		if c != 0 {
			b = append(b, key(fStatusCode, protowire.VarintType), byte(c))
		}
		b = closeLen(b, body, room)
	}
	if s.Flags != 0 {
		b = protowire.AppendTag(b, fSpanFlags, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, uint32(s.Flags))
	}
	return b
}

// appendAttrs appends attrs as repeated KeyValue field num. Their sizes are
// predicted from the strings' lengths, which hold unless a string needs repair.
// ascii says the maker promised every string is ASCII (Span.ASCII).
func appendAttrs(b []byte, num protowire.Number, attrs []spans.Attr, ascii bool) []byte {
	if ascii {
		return appendASCIIAttrs(b, num, attrs)
	}
	for i := range attrs {
		a := &attrs[i]
		value := anyValueSize(a)
		valueRoom := lenRoom(value)
		kvRoom := lenRoom(stringSize(fKVKey, a.Key) + 1 + valueRoom + value)
		var kv, v int
		b, kv = openLen(b, num, kvRoom)
		b = appendString(b, fKVKey, a.Key)
		b, v = openLen(b, fKVValue, valueRoom)
		b = appendAnyValue(b, a, false)
		b = closeLen(b, v, valueRoom)
		b = closeLen(b, kv, kvRoom)
	}
	return b
}

// appendASCIIAttrs is appendAttrs for attributes whose strings are ASCII
// (Span.ASCII): every length is known before its message is written, so
// each KeyValue is appended front to back with its exact lengths, into room
// grown once, with no lengths to fill in afterwards. It spells out what
// anyValueSize and appendAnyValue do rather than call them: the calls cost
// 14 % of encoding a span (BenchmarkEncode/ascii 132 vs 150 ns), and this
// loop runs for nearly every attribute the agent exports.
func appendASCIIAttrs(b []byte, num protowire.Number, attrs []spans.Attr) []byte {
	for i := range attrs {
		a := &attrs[i]
		var value int
		switch a.Type {
		case spans.AttrInt:
			value = 1 + protowire.SizeVarint(uint64(a.Int))
		case spans.AttrBool:
			value = 2
		case spans.AttrFloat:
			value = 9
		default:
			value = 1 + protowire.SizeBytes(len(a.Str))
		}
		kv := 1 + protowire.SizeBytes(value)
		if a.Key != "" {
			kv += 1 + protowire.SizeBytes(len(a.Key))
		}
		b = slices.Grow(b, 1+protowire.SizeVarint(uint64(kv))+kv)
		b = append(b, key(num, protowire.BytesType))
		b = appendVarint(b, uint64(kv))
		if a.Key != "" {
			b = append(b, key(fKVKey, protowire.BytesType))
			b = appendVarint(b, uint64(len(a.Key)))
			b = append(b, a.Key...)
		}
		b = append(b, key(fKVValue, protowire.BytesType), byte(value)) // value < 128 unless a long string
		if value >= 0x80 {
			b = protowire.AppendVarint(b[:len(b)-1], uint64(value))
		}
		switch a.Type {
		case spans.AttrInt:
			b = append(b, key(fAnyInt, protowire.VarintType))
			b = appendVarint(b, uint64(a.Int))
		case spans.AttrBool:
			b = append(b, key(fAnyBool, protowire.VarintType), byte(protowire.EncodeBool(a.Bool)))
		case spans.AttrFloat:
			b = append(b, key(fAnyDouble, protowire.Fixed64Type))
			b = protowire.AppendFixed64(b, math.Float64bits(a.Float))
		default:
			b = append(b, key(fAnyString, protowire.BytesType))
			b = appendVarint(b, uint64(len(a.Str)))
			b = append(b, a.Str...)
		}
	}
	return b
}

// anyValueSize is the size of a's AnyValue message, its string taken as valid.
func anyValueSize(a *spans.Attr) int {
	switch a.Type {
	case spans.AttrInt:
		return 1 + protowire.SizeVarint(uint64(a.Int))
	case spans.AttrBool:
		return 2
	case spans.AttrFloat:
		return 9
	}
	return 1 + protowire.SizeBytes(len(a.Str))
}

// appendAnyValue appends the body of a's AnyValue; ascii as appendStringChecked.
func appendAnyValue(b []byte, a *spans.Attr, ascii bool) []byte {
	switch a.Type {
	case spans.AttrInt:
		b = append(b, key(fAnyInt, protowire.VarintType))
		return appendVarint(b, uint64(a.Int))
	case spans.AttrBool:
		return append(b, key(fAnyBool, protowire.VarintType), byte(protowire.EncodeBool(a.Bool)))
	case spans.AttrFloat:
		b = append(b, key(fAnyDouble, protowire.Fixed64Type))
		return protowire.AppendFixed64(b, math.Float64bits(a.Float))
	}
	// A oneof member is written even when empty: "" is a value.
	return appendStringChecked(b, fAnyString, a.Str, ascii)
}

// lenRoom is the size of length n as a varint.
func lenRoom(n int) int {
	if n < 0x80 {
		return 1
	}
	return protowire.SizeVarint(uint64(n))
}

// stringSize is the size of a valid proto3 string field: nothing when empty.
func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

// appendString appends a proto3 string field, omitted when empty.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return appendStringField(b, num, s)
}

// appendStringField appends a string field (1 to 15), even an empty one.
//
// Protobuf strings must be UTF-8 and a collector rejects the whole request
// otherwise, while paths and header values the proxy copies from the wire may
// hold any bytes. Invalid UTF-8 is written repaired (U+FFFD for each run of
// invalid bytes, as strings.ToValidUTF8), leaving the span record as it is.
func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if !validUTF8(s) {
		room := protowire.SizeVarint(uint64(len(s)))
		var body int
		b, body = openLen(b, num, room)
		b = appendRepairedUTF8(b, s)
		return closeLen(b, body, room)
	}
	b = append(b, key(num, protowire.BytesType))
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendStringChecked is appendStringField for a string known to be ASCII
// when ascii is true (Span.ASCII): it skips the check, a fifth of what
// encoding a span cost.
func appendStringChecked(b []byte, num protowire.Number, s string, ascii bool) []byte {
	if !ascii {
		return appendStringField(b, num, s)
	}
	b = append(b, key(num, protowire.BytesType))
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// validUTF8 is utf8.ValidString with a faster path for ASCII, which nearly all
// span strings are.
func validUTF8(s string) bool { return spans.IsASCII(s) || utf8.ValidString(s) }

// appendRepairedUTF8 appends s with each run of invalid UTF-8 replaced by U+FFFD,
// as strings.ToValidUTF8(s, "\uFFFD") but without allocating.
func appendRepairedUTF8(b []byte, s string) []byte {
	invalid := false // the previous byte was invalid
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, c)
			i++
			invalid = false
			continue
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		if n == 1 {
			if !invalid {
				b = append(b, "\uFFFD"...)
				invalid = true
			}
			i++
			continue
		}
		b = append(b, s[i:i+n]...)
		i += n
		invalid = false
	}
	return b
}

func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

// openLen appends the tag of length-delimited field num (1 to 15) and room bytes
// for its length, which closeLen fills in once the body is written. It returns
// where the body starts.
func openLen(b []byte, num protowire.Number, room int) ([]byte, int) {
	b = append(b, key(num, protowire.BytesType))
	switch room {
	case 1:
		b = append(b, 0)
	case 2:
		b = append(b, 0, 0)
	default:
		for range room {
			b = append(b, 0)
		}
	}
	return b, len(b)
}

// closeLen writes the length of the body from start to the end of b into the
// room bytes before start: padded when it is shorter, and moving the body up when
// it does not fit.
func closeLen(b []byte, start, room int) []byte {
	n := uint64(len(b) - start)
	if room == 1 && n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	if n < 1<<(7*uint(room)) {
		putPaddedVarint(b[start-room:start], n)
		return b
	}
	extra := protowire.SizeVarint(n) - room
	for range extra {
		b = append(b, 0)
	}
	copy(b[start+extra:], b[start:len(b)-extra])
	putPaddedVarint(b[start-room:start+extra], n)
	return b
}

// putPaddedVarint writes v as a varint of exactly len(dst) bytes, which it must fit.
func putPaddedVarint(dst []byte, v uint64) {
	last := len(dst) - 1
	for i := range last {
		dst[i] = byte(v) | 0x80
		v >>= 7
	}
	dst[last] = byte(v)
}
