package exporter

import (
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// The few response messages the exporter reads are decoded here with protowire
// rather than with their generated types: those would link
// go.opentelemetry.io/proto/otlp and, through it, grpc-gateway into the agent for
// three fields. Unknown fields are skipped and a known field of an unexpected
// wire type is ignored, as generated code does; invalid UTF-8 in a message, which
// generated code would refuse the whole response for, is repaired instead.

// decodeExportResponse reads the partial_success of an
// opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse.
func decodeExportResponse(b []byte) (partialSuccess, error) {
	var ps partialSuccess
	err := decodeFields(b, func(num protowire.Number, typ protowire.Type, _ uint64, v []byte) error {
		if num != 1 || typ != protowire.BytesType { // partial_success
			return nil
		}
		return decodeFields(v, func(num protowire.Number, typ protowire.Type, x uint64, v []byte) error {
			switch {
			case num == 1 && typ == protowire.VarintType: // rejected_spans
				ps.rejected = int64(x)
			case num == 2 && typ == protowire.BytesType: // error_message
				ps.message = strings.ToValidUTF8(string(v), "\uFFFD")
			}
			return nil
		})
	})
	return ps, err
}

// decodeStatusMessage returns the message of a google.rpc.Status, or "".
func decodeStatusMessage(b []byte) string {
	var msg string
	err := decodeFields(b, func(num protowire.Number, typ protowire.Type, _ uint64, v []byte) error {
		if num == 2 && typ == protowire.BytesType {
			msg = strings.ToValidUTF8(string(v), "\uFFFD")
		}
		return nil
	})
	if err != nil {
		return ""
	}
	return msg
}

// retryDelay returns the retry_delay of the (last) google.rpc.RetryInfo among a
// google.rpc.Status's details, and whether there is one.
func retryDelay(details []*anypb.Any) (delay time.Duration, found bool) {
	for _, d := range details {
		name := d.GetTypeUrl()
		if name[strings.LastIndexByte(name, '/')+1:] != "google.rpc.RetryInfo" {
			continue
		}
		var secs, nanos int64
		err := decodeFields(d.GetValue(), func(num protowire.Number, typ protowire.Type, _ uint64, v []byte) error {
			if num != 1 || typ != protowire.BytesType { // retry_delay, a google.protobuf.Duration
				return nil
			}
			return decodeFields(v, func(num protowire.Number, typ protowire.Type, x uint64, _ []byte) error {
				switch {
				case num == 1 && typ == protowire.VarintType: // seconds
					secs = int64(x)
				case num == 2 && typ == protowire.VarintType: // nanos
					nanos = int64(int32(x))
				}
				return nil
			})
		})
		if err == nil {
			delay, found = durationOf(secs, nanos), true
		}
	}
	return delay, found
}

// durationOf converts a google.protobuf.Duration, saturating as durationpb does.
func durationOf(secs, nanos int64) time.Duration {
	const maxSecs = int64(math.MaxInt64) / int64(time.Second)
	switch {
	case secs > maxSecs:
		return math.MaxInt64
	case secs < -maxSecs:
		return math.MinInt64
	}
	d := time.Duration(secs) * time.Second
	sum := d + time.Duration(nanos)
	switch {
	case nanos > 0 && sum < d:
		return math.MaxInt64
	case nanos < 0 && sum > d:
		return math.MinInt64
	}
	return sum
}

// decodeFields calls f for each varint field of message b with its value, and for
// each length-delimited field with its bytes; other fields are skipped. It stops
// at the first error, f's or a malformed field.
func decodeFields(b []byte, f func(num protowire.Number, typ protowire.Type, varint uint64, bytes []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var err error
		switch typ {
		case protowire.VarintType:
			var x uint64
			x, n = protowire.ConsumeVarint(b)
			if n >= 0 {
				err = f(num, typ, x, nil)
			}
		case protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				err = f(num, typ, 0, v)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
