package exporter

import (
	"math"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/hoptrace/hoptrace/spans"
)

// encodeBatch runs the exporter's wire encoder and decodes the result with the
// OTLP protobuf types.
func encodeBatch(t *testing.T, enc *encoder, batch []*spans.Span) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	b := enc.encode(nil, batch)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatalf("the encoding does not decode as ExportTraceServiceRequest: %v", err)
	}
	return &req
}

// The wire encoder and the message-based reference must agree on every batch
// shape, including a reused encoder after a larger batch.
func TestEncoderMatchesReference(t *testing.T) {
	a, b := podResource("a", "a-1"), podResource("b", "b-1")
	odd := []*spans.Span{
		{}, // all zero: zero ids, no resource, no times
		{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "empty strings", Resource: a,
			Attrs: []spans.Attr{spans.String("", ""), spans.String("k", ""), spans.Int("neg", -1), spans.Int("zero", 0),
				spans.Bool("f", false), spans.Float("nan", math.NaN()), spans.Float("inf", math.Inf(-1)), spans.Float("z", 0)}},
		{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Kind: spans.KindInternal, Status: spans.StatusOK,
			Events: []spans.Event{{}, {Name: "only name"}}, Resource: &spans.Resource{}},
		{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), StatusMessage: "message without code", Flags: 3,
			Start: time.Unix(0, 1), End: time.Unix(1<<33, 0), Resource: b},
		{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "big", Resource: b,
			Attrs: []spans.Attr{spans.String("long", string(make([]byte, 300))), spans.Int("max", math.MaxInt64)}},
	}
	var reused encoder
	for name, batch := range map[string][]*spans.Span{
		"hops":        hops(40, a, b),
		"odd spans":   odd,
		"single":      hop(a, b, time.Now(), 503)[:1],
		"empty":       nil,
		"many groups": append(hops(3, podResource("x", "x"), podResource("y", "y")), hops(2, a, b)...),
	} {
		t.Run(name, func(t *testing.T) {
			want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)}
			var fresh encoder
			for _, enc := range []*encoder{&fresh, &reused} {
				got := encodeBatch(t, enc, batch)
				if !proto.Equal(got, want) {
					t.Fatalf("encoder output differs from toResourceSpans:\n got %v\nwant %v", got, want)
				}
			}
		})
	}
}

func TestEncoderReplacesInvalidUTF8(t *testing.T) {
	res := &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", "bad\xffsvc")}}
	s := &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "GET /caf\xe9",
		Attrs:    []spans.Attr{spans.String("url.path", "/a\xff\xfeb"), spans.String("k\xc3", "v"), spans.Int("n", 1)},
		Events:   []spans.Event{{Name: "ev\xff", Attrs: []spans.Attr{spans.String("x", "\xff")}}},
		Resource: res}
	ok := &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "fine", Resource: res}
	batch := []*spans.Span{s, ok}
	var enc encoder
	req := encodeBatch(t, &enc, batch)
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)}
	if !proto.Equal(req, want) {
		t.Errorf("encoder and reference repair differently:\n got %v\nwant %v", req, want)
	}
	if v := attr(req.ResourceSpans[0].Resource.Attributes, "service.name").GetStringValue(); v != "bad\uFFFDsvc" {
		t.Errorf("service.name %q", v)
	}
	if s.Name != "GET /caf\xe9" || res.Attrs[0].Str != "bad\xffsvc" {
		t.Error("encoding modified the span record")
	}
	got := req.ResourceSpans[0].ScopeSpans[0].Spans[0]
	if got.Name != "GET /caf\uFFFD" {
		t.Errorf("name %q", got.Name)
	}
	if v := attr(got.Attributes, "url.path").GetStringValue(); v != "/a\uFFFDb" {
		t.Errorf("url.path %q", v)
	}
	if attr(got.Attributes, "k\uFFFD") == nil {
		t.Errorf("attribute key not repaired: %v", got.Attributes)
	}
}

func TestEncoderDoesNotAllocateWhenWarm(t *testing.T) {
	batch := hops(128, podResource("a", "a-1"), podResource("b", "b-1"))
	var enc encoder
	buf := enc.encode(nil, batch)
	allocs := testing.AllocsPerRun(20, func() {
		buf = enc.encode(buf[:0], batch)
		enc.release()
	})
	if allocs != 0 {
		t.Errorf("encoding a warm batch allocates %.1f times", allocs)
	}
}

// copyBuilder defers a copy of a span: Build appends its attributes and
// events to what into has room for, as the proxy's builder does.
type copyBuilder struct{ src *spans.Span }

func (b copyBuilder) Build(_, into *spans.Span) {
	attrs := append(into.Attrs, b.src.Attrs...)
	events := append(into.Events, b.src.Events...)
	*into = *b.src
	into.Attrs, into.Events = attrs, events
}

// deferred returns a span whose content copyBuilder makes when it is built.
func deferred(s *spans.Span) *spans.Span {
	d := &spans.Span{Resource: s.Resource}
	d.SetBuilder(copyBuilder{s})
	return d
}

// Deferred spans (spans.Builder) encode as they would built: each is built
// into the encoder's one scratch span just before it is encoded, a span with
// many attributes before one with few leaves nothing of its own behind, and
// a warm encoder still allocates nothing.
func TestEncoderBuildsDeferredSpans(t *testing.T) {
	a, b := podResource("a", "a-1"), podResource("b", "b-1")
	many := &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "many", Resource: a,
		Events: []spans.Event{{Name: "e1"}, {Name: "e2"}, {Name: "e3"}}}
	for i := range 30 {
		many.Attrs = append(many.Attrs, spans.Int("k", int64(i)))
	}
	few := &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "few", Resource: b,
		Attrs: []spans.Attr{spans.String("only", "one")}}
	batch := append([]*spans.Span{many, few, {}}, hops(20, a, b)...)
	var mixed []*spans.Span
	for i, s := range batch {
		if i%3 == 2 {
			mixed = append(mixed, s) // some built already, as the agent's own spans are
		} else {
			mixed = append(mixed, deferred(s))
		}
	}
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)}
	var enc encoder
	for range 2 {
		if got := encodeBatch(t, &enc, mixed); !proto.Equal(got, want) {
			t.Fatalf("deferred spans encode differently:\n got %v\nwant %v", got, want)
		}
		enc.release()
	}
	buf := enc.encode(nil, mixed)
	allocs := testing.AllocsPerRun(20, func() {
		buf = enc.encode(buf[:0], mixed)
		enc.release()
	})
	if allocs != 0 {
		t.Errorf("encoding a warm batch of deferred spans allocates %.1f times", allocs)
	}
}

// Lengths on both sides of each varint size, where closeLen pads a length that is
// shorter than its room or moves the body up for a longer one.
func TestEncoderLengthForms(t *testing.T) {
	res := podResource("a", "a-1")
	var batch []*spans.Span
	for _, n := range []int{0, 1, 100, 117, 118, 119, 120, 127, 128, 129, 300, 16250, 16383, 16384, 16500, 1 << 21} {
		s := strings.Repeat("x", n)
		bad := strings.Repeat("\xff", n) // each byte a run of its own would be 3n bytes; one run is 3
		batch = append(batch,
			&spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: s, Resource: res},
			&spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Resource: res,
				Attrs:  []spans.Attr{spans.String("k", s), spans.String(s, "v"), spans.String("bad", bad)},
				Events: []spans.Event{{Name: s, Attrs: []spans.Attr{spans.String("e", s)}}},
				Status: spans.StatusError, StatusMessage: s},
			&spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Name: "alternating", Resource: res,
				Attrs: []spans.Attr{spans.String("alternating", strings.Repeat("\xffa", n/2))}},
		)
	}
	// A resource over 127 bytes, and one of none.
	batch = append(batch, &spans.Span{Name: "big resource", Resource: &spans.Resource{Attrs: []spans.Attr{spans.String("k", strings.Repeat("r", 200))}}},
		&spans.Span{Name: "empty resource", Resource: &spans.Resource{}})
	var enc encoder
	got := encodeBatch(t, &enc, batch)
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)}
	if !proto.Equal(got, want) {
		t.Fatal("encoder output differs from toResourceSpans")
	}
}

// Padded lengths cost a few bytes per resource, not per span.
func TestEncoderPaddingOverhead(t *testing.T) {
	batch := hops(128, podResource("a", "a-1"), podResource("b", "b-1"))
	var enc encoder
	b := enc.encode(nil, batch)
	minimal, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > len(minimal)+2*2*(groupLenRoom-1) {
		t.Errorf("encoded %d bytes, the minimal encoding is %d", len(b), len(minimal))
	}
}

func TestPaddedVarint(t *testing.T) {
	for _, tt := range []struct {
		v    uint64
		room int
	}{{0, 1}, {127, 1}, {0, 2}, {5, 2}, {127, 2}, {128, 2}, {16383, 2}, {0, 5}, {1 << 20, 5}, {1<<35 - 1, 5}} {
		b := make([]byte, tt.room)
		putPaddedVarint(b, tt.v)
		v, n := protowire.ConsumeVarint(b)
		if n != tt.room || v != tt.v {
			t.Errorf("putPaddedVarint(%d) in %d bytes = % x: decodes as %d in %d bytes", tt.v, tt.room, b, v, n)
		}
	}
}

// FuzzEncoder holds the wire encoder to the reference for arbitrary strings and
// values: the bytes must decode with the OTLP types into what toResourceSpans builds.
func FuzzEncoder(f *testing.F) {
	f.Add("GET /users/{id}", "url.path", "/users/42", int64(200), 0.25, uint8(3), uint16(1))
	f.Add("caf\xe9", "k\xc3", "\xff\xfe", int64(-1), math.Inf(1), uint8(0xff), uint16(200))
	f.Add("", "", "", int64(0), 0.0, uint8(0), uint16(16400))
	f.Add("GET /", "http.request.method", "GET", int64(300), 1.5, uint8(0x4f), uint16(130))
	f.Fuzz(func(t *testing.T, name, key, value string, i int64, fl float64, shape uint8, repeat uint16) {
		long := strings.Repeat(value, int(repeat)%20000/max(len(value), 1))
		resources := []*spans.Resource{nil, {Attrs: []spans.Attr{spans.String(key, value)}}, {Attrs: []spans.Attr{spans.String("service.name", long)}}}
		// The maker's promise (Span.ASCII), when it holds, for half the shapes.
		ascii := shape&0x40 != 0 && !strings.ContainsFunc(name+key+value, func(r rune) bool { return r >= 0x80 })
		var batch []*spans.Span
		for n := range int(shape&7) + 1 {
			s := &spans.Span{
				TraceID: spans.TraceID{byte(n), 1}, SpanID: spans.SpanID{byte(n)}, TraceState: key,
				Flags: shape, Name: name, Kind: spans.Kind(shape % 5), Status: spans.Status(shape % 3), StatusMessage: value,
				Start: time.Unix(0, i), End: time.Unix(0, i).Add(time.Duration(repeat)),
				Attrs: []spans.Attr{spans.String(key, value), spans.Int(key, i), spans.Float(value, fl),
					spans.Bool(name, shape&1 == 0), spans.String("long", long)},
				Resource: resources[(int(shape)+n)%len(resources)],
				ASCII:    ascii,
			}
			if shape&8 != 0 {
				s.ParentID = spans.SpanID{1}
			}
			for range int(shape>>4) % 4 {
				s.Events = append(s.Events, spans.Event{Name: value, Time: time.Unix(1, i), Attrs: s.Attrs[:int(shape)%5]})
			}
			batch = append(batch, s)
		}
		var enc encoder
		got := encodeBatch(t, &enc, batch)
		want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)}
		if !proto.Equal(got, want) {
			t.Fatalf("encoder output differs from toResourceSpans:\n got %v\nwant %v", got, want)
		}
	})
}

// A span that promises ASCII strings (spans.Span.ASCII) encodes as the
// reference does, with lengths on both sides of each varint size and every
// kind of value.
func TestEncoderASCIISpans(t *testing.T) {
	res := podResource("a", "a-1")
	batch := hops(4, res, podResource("b", "b-1"))
	for _, n := range []int{0, 1, 100, 117, 118, 119, 120, 125, 126, 127, 128, 129, 300, 16250, 16383, 16384, 16500, 1 << 21} {
		x := strings.Repeat("x", n)
		batch = append(batch, &spans.Span{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Resource: res, Name: x,
			Attrs: []spans.Attr{spans.String("k", x), spans.String(x, "v"), spans.String("", ""), spans.String("e", ""),
				spans.Int("i", int64(n)), spans.Int("neg", -int64(n)), spans.Bool("t", true), spans.Bool("f", false),
				spans.Float("fl", float64(n)/3), spans.Float("nan", math.NaN())},
			Events: []spans.Event{{Name: x, Attrs: []spans.Attr{spans.String("e", x)}}}})
	}
	for _, s := range batch {
		s.ASCII = true
	}
	var enc encoder
	got := encodeBatch(t, &enc, batch)
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: toResourceSpans(batch)}
	if !proto.Equal(got, want) {
		t.Fatal("ASCII spans encode differently from the reference")
	}
}
