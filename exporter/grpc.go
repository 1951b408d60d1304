package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// userAgent identifies the exporter to collectors, as the SDK exporters do.
const userAgent = "hoptrace-otlp-exporter"

// exportMethod is opentelemetry.proto.collector.trace.v1.TraceService's Export.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// grpcSender makes OTLP/gRPC's one call, a unary Export, over HTTP/2 as the
// gRPC wire protocol describes it (PROTOCOL-HTTP2.md): a POST whose body is
// the message behind five bytes of framing, the status in the trailers. It
// replaced grpc-go, whose machinery (resolvers, balancers, channelz, its own
// buffer pools) this call never used and which was a third of the agent's
// binary, resident on every node; h2Caller then replaced http2.Transport.
type grpcSender struct {
	h       *h2Caller
	headers [][2]string // lower-case names, fixed for every call
	gz      *gzipper    // nil: no compression

	prefix [5]byte // reused across batches; send is only called by the worker
	fields [][2]string
}

func newGRPCSender(cfg Config, t target) (*grpcSender, error) {
	host, _, err := net.SplitHostPort(t.grpcAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: grpc endpoint %q: %w", ErrInvalidConfig, t.grpcAddr, err)
	}
	var tc *tls.Config
	if t.tls {
		if tc, err = tlsConfig(cfg); err != nil {
			return nil, err
		}
		tc.NextProtos = []string{"h2"}
		if tc.ServerName == "" {
			tc.ServerName = host
		}
	}
	dial := rawDialer(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	addr := t.grpcAddr
	h := newH2Caller(addr, tc, func(ctx context.Context) (net.Conn, error) { return dial(ctx, "tcp", addr) })
	hdr := make(http.Header, len(cfg.Headers)+4)
	for k, v := range cfg.Headers {
		hdr.Set(k, v)
	}
	hdr.Set("Content-Type", "application/grpc+proto")
	hdr.Set("Te", "trailers")
	hdr.Set("User-Agent", userAgent)
	s := &grpcSender{h: h}
	if cfg.Compression == CompressionGzip {
		hdr.Set("Grpc-Encoding", "gzip")
		s.gz = newGzipper()
	}
	s.headers = lowerHeaders(hdr)
	return s, nil
}

func (s *grpcSender) send(ctx context.Context, p *payload) (partialSuccess, error) {
	msg := p.bytes()
	s.prefix[0] = 0
	if s.gz != nil {
		var err error
		if msg, err = s.gz.compress(msg); err != nil {
			return partialSuccess{}, err
		}
		s.prefix[0] = 1 // compressed, with the grpc-encoding of the request
	}
	binary.BigEndian.PutUint32(s.prefix[1:], uint32(len(msg)))
	s.fields = append(s.fields[:0], s.headers...)
	if d, ok := ctx.Deadline(); ok {
		s.fields = append(s.fields, [2]string{"grpc-timeout", grpcTimeout(time.Until(d))})
	}
	// The call is over when it returns: nothing reads the payload later.
	reply, err := s.h.call(ctx, exportMethod, s.fields, s.prefix[:], msg)
	if err != nil {
		// Refused, reset, timed out: the collector may be back soon.
		code := codeUnavailable
		if ctx.Err() != nil {
			code = codeDeadlineExceeded
		}
		return partialSuccess{}, grpcError(code, err.Error(), nil)
	}
	return readGRPCResponse(reply)
}

func (s *grpcSender) close() error {
	s.h.close()
	return nil
}

// readGRPCResponse reads an Export response: its message, if any, and the
// status from the trailers (or the header, for a trailers-only response).
func readGRPCResponse(r *h2Reply) (partialSuccess, error) {
	if r.status != http.StatusOK {
		// Not from a gRPC server (a proxy, a load balancer): the gRPC spec maps
		// the HTTP status.
		return partialSuccess{}, grpcError(codeOfHTTP(r.status), "http status "+strconv.Itoa(r.status)+" "+http.StatusText(r.status), nil)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return partialSuccess{}, grpcError(codeUnknown, fmt.Sprintf("response content-type %q is not gRPC", ct), nil)
	}
	st := r.trailer
	if len(st.Values("Grpc-Status")) == 0 {
		st = r.header // trailers-only
	}
	raw := st.Get("Grpc-Status")
	if raw == "" {
		// The stream ended without a status: broken on the way, so it may
		// well work again.
		return partialSuccess{}, grpcError(codeUnavailable, "response ended without a grpc-status", nil)
	}
	code, err := strconv.Atoi(raw)
	if err != nil {
		return partialSuccess{}, grpcError(codeUnknown, "malformed grpc-status "+strconv.Quote(raw), nil)
	}
	if code != codeOK {
		return partialSuccess{}, grpcError(code, decodeGRPCMessage(st.Get("Grpc-Message")), statusDetails(st.Get("Grpc-Status-Details-Bin")))
	}
	ps, err := decodeGRPCMessageBody(r.body, r.header.Get("Grpc-Encoding"))
	if err != nil {
		// Accepted; a body we cannot read only loses the partial-success detail.
		return partialSuccess{}, nil
	}
	return ps, nil
}

// decodeGRPCMessageBody reads the one length-prefixed message of a unary
// response (none: an empty ExportTraceServiceResponse).
func decodeGRPCMessageBody(b []byte, encoding string) (partialSuccess, error) {
	if len(b) == 0 {
		return partialSuccess{}, nil
	}
	if len(b) < 5 || int(binary.BigEndian.Uint32(b[1:5])) != len(b)-5 {
		return partialSuccess{}, errors.New("malformed grpc message framing")
	}
	msg := b[5:]
	if b[0] == 1 {
		if encoding != "gzip" {
			return partialSuccess{}, fmt.Errorf("compressed response in %q", encoding)
		}
		zr, err := gzip.NewReader(bytes.NewReader(msg))
		if err != nil {
			return partialSuccess{}, err
		}
		msg, err = io.ReadAll(io.LimitReader(zr, maxResponseBody))
		if err != nil {
			return partialSuccess{}, err
		}
	}
	return decodeExportResponse(msg)
}

// gRPC status codes (google.golang.org/grpc/codes), the ones used here.
const (
	codeOK                = 0
	codeCanceled          = 1
	codeUnknown           = 2
	codeDeadlineExceeded  = 4
	codeResourceExhausted = 8
	codeAborted           = 10
	codeOutOfRange        = 11
	codeUnimplemented     = 12
	codeInternal          = 13
	codeUnavailable       = 14
	codeDataLoss          = 15
	codeUnauthenticated   = 16
	codePermissionDenied  = 7
)

var codeNames = [...]string{"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
	"Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"}

func codeName(c int) string {
	if c >= 0 && c < len(codeNames) {
		return codeNames[c]
	}
	return "Code(" + strconv.Itoa(c) + ")"
}

// codeOfHTTP maps an HTTP status from something that is not a gRPC server, as
// gRPC's http-grpc-status-mapping.md says.
func codeOfHTTP(status int) int {
	switch status {
	case http.StatusBadRequest:
		return codeInternal
	case http.StatusUnauthorized:
		return codeUnauthenticated
	case http.StatusForbidden:
		return codePermissionDenied
	case http.StatusNotFound:
		return codeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codeUnavailable
	}
	return codeUnknown
}

// grpcError classifies a failed Export call as the OTLP/gRPC spec says.
func grpcError(code int, msg string, details []*anypb.Any) error {
	xe := &exportError{err: fmt.Errorf("otlp grpc export: code = %s desc = %s", codeName(code), msg)}
	delay, hasRetryInfo := retryDelay(details)
	xe.throttle = delay
	switch code {
	case codeCanceled, codeDeadlineExceeded, codeAborted, codeOutOfRange, codeUnavailable, codeDataLoss:
		xe.retryable = true
	case codeResourceExhausted:
		// Only a server that says when to come back expects us to: without RetryInfo
		// the exhaustion may be permanent (a message too large).
		xe.retryable = hasRetryInfo
	}
	return xe
}

// grpcTimeout is d as a grpc-timeout header value: at most 8 digits and a unit.
func grpcTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit string
		size time.Duration
	}{{"n", time.Nanosecond}, {"u", time.Microsecond}, {"m", time.Millisecond}, {"S", time.Second}, {"M", time.Minute}} {
		if n := (d + u.size - 1) / u.size; n < 1e8 {
			return strconv.FormatInt(int64(n), 10) + u.unit
		}
	}
	return strconv.FormatInt(int64(min(d/time.Hour+1, 1e8-1)), 10) + "H"
}

// decodeGRPCMessage undoes grpc-message's percent-encoding; what is not valid
// UTF-8 is repaired.
func decodeGRPCMessage(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// statusDetails reads the details of the google.rpc.Status a server sends,
// base64, in grpc-status-details-bin.
func statusDetails(v string) []*anypb.Any {
	if v == "" {
		return nil
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "="))
	if err != nil {
		return nil
	}
	var details []*anypb.Any
	decodeFields(b, func(num protowire.Number, typ protowire.Type, _ uint64, v []byte) error {
		if num != 3 || typ != protowire.BytesType { // details
			return nil
		}
		a := &anypb.Any{}
		decodeFields(v, func(num protowire.Number, typ protowire.Type, _ uint64, v []byte) error {
			switch {
			case num == 1 && typ == protowire.BytesType:
				a.TypeUrl = string(v)
			case num == 2 && typ == protowire.BytesType:
				a.Value = append([]byte(nil), v...)
			}
			return nil
		})
		details = append(details, a)
		return nil
	})
	return details
}
