package exporter

import (
	"math"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeExportResponse(t *testing.T) {
	partial := marshal(t, &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
		RejectedSpans: 3, ErrorMessage: "3 spans have an end before their start"}})
	unknown := protowire.AppendString(protowire.AppendTag(nil, 99, protowire.BytesType), "from a newer collector")
	unknown = protowire.AppendVarint(protowire.AppendTag(unknown, 98, protowire.VarintType), 7)
	for _, tt := range []struct {
		name string
		in   []byte
		want partialSuccess
	}{
		{"empty", nil, partialSuccess{}},
		{"empty partial success", marshal(t, &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{}}), partialSuccess{}},
		{"partial success", partial, partialSuccess{rejected: 3, message: "3 spans have an end before their start"}},
		{"negative count", marshal(t, &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: -1}}), partialSuccess{rejected: -1}},
		{"unknown fields around", append(append(append([]byte(nil), unknown...), partial...), unknown...), partialSuccess{rejected: 3, message: "3 spans have an end before their start"}},
		{"partial success of an unexpected wire type", protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5), partialSuccess{}},
		{"invalid UTF-8 message", protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType),
			protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "bad\xff")), partialSuccess{message: "bad\uFFFD"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeExportResponse(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	for _, bad := range [][]byte{partial[:len(partial)-1], {0x0a, 0x05, 0x08}, {0x00}, {0xff}} {
		if got, err := decodeExportResponse(bad); err == nil {
			t.Errorf("decodeExportResponse(% x) = %+v, want an error", bad, got)
		}
	}
}

func TestDecodeStatusMessage(t *testing.T) {
	st := marshal(t, &spb.Status{Code: 8, Message: "slow down", Details: []*anypb.Any{{TypeUrl: "x", Value: []byte{1}}}})
	if got := decodeStatusMessage(st); got != "slow down" {
		t.Errorf("message %q", got)
	}
	for _, b := range [][]byte{nil, []byte("<html>Bad Gateway</html>"), []byte("Bad Gateway"), st[:len(st)-1]} {
		if got := decodeStatusMessage(b); got != "" {
			t.Errorf("decodeStatusMessage(%q) = %q, want none", b, got)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	retryInfo := func(d *durationpb.Duration) *anypb.Any {
		a, err := anypb.New(&errdetails.RetryInfo{RetryDelay: d})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	other, err := anypb.New(&errdetails.ErrorInfo{Reason: "x"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		details []*anypb.Any
		want    time.Duration
		ok      bool
	}{
		{"none", nil, 0, false},
		{"other details only", []*anypb.Any{other}, 0, false},
		{"retry info", []*anypb.Any{other, retryInfo(durationpb.New(1500 * time.Millisecond))}, 1500 * time.Millisecond, true},
		{"retry info without delay", []*anypb.Any{retryInfo(nil)}, 0, true},
		{"another type URL prefix", []*anypb.Any{{TypeUrl: "example.com/google.rpc.RetryInfo", Value: retryInfo(durationpb.New(time.Second)).Value}}, time.Second, true},
		{"negative", []*anypb.Any{retryInfo(&durationpb.Duration{Seconds: -2, Nanos: -5})}, -2*time.Second - 5, true},
		{"saturated", []*anypb.Any{retryInfo(&durationpb.Duration{Seconds: math.MaxInt64})}, math.MaxInt64, true},
		{"saturated by nanos", []*anypb.Any{retryInfo(&durationpb.Duration{Seconds: int64(math.MaxInt64 / time.Second), Nanos: 999999999})}, math.MaxInt64, true},
		{"malformed, then valid", []*anypb.Any{{TypeUrl: "type.googleapis.com/google.rpc.RetryInfo", Value: []byte{0x0a, 0x09}},
			retryInfo(durationpb.New(time.Second))}, time.Second, true},
		{"valid, then malformed", []*anypb.Any{retryInfo(durationpb.New(time.Second)),
			{TypeUrl: "type.googleapis.com/google.rpc.RetryInfo", Value: []byte{0x0a, 0x09}}}, time.Second, true},
		{"two: the last counts", []*anypb.Any{retryInfo(durationpb.New(time.Second)), retryInfo(durationpb.New(2 * time.Second))}, 2 * time.Second, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := retryDelay(tt.details)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %v, %t; want %v, %t", got, ok, tt.want, tt.ok)
			}
			if ok && len(tt.details) > 0 {
				// durationpb is the reference where it is defined.
				var ri errdetails.RetryInfo
				if proto.Unmarshal(tt.details[len(tt.details)-1].Value, &ri) == nil && ri.RetryDelay != nil && ri.RetryDelay.AsDuration() != got {
					t.Errorf("durationpb says %v", ri.RetryDelay.AsDuration())
				}
			}
		})
	}
}

// FuzzDecodeExportResponse: whatever the generated type decodes, so does the
// exporter, to the same values.
func FuzzDecodeExportResponse(f *testing.F) {
	f.Add(marshal(f, &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 3, ErrorMessage: "x"}}))
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01, 0x0a, 0x03, 0x12, 0x01, 0x61})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeExportResponse(b)
		var want coltracepb.ExportTraceServiceResponse
		if proto.Unmarshal(b, &want) != nil {
			return
		}
		ps := want.GetPartialSuccess()
		if err != nil || got.rejected != ps.GetRejectedSpans() || got.message != ps.GetErrorMessage() {
			t.Errorf("got %+v, %v; want %v", got, err, ps)
		}
	})
}
