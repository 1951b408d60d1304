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
	"sync"
	"time"

	"golang.org/x/net/http2"
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
// binary, resident on every node.
type grpcSender struct {
	url     string
	client  *http.Client
	tr      *http2.Transport
	headers http.Header
	gz      *gzipper // nil: no compression

	prefix [5]byte // reused across batches; send is only called by the worker
}

func newGRPCSender(cfg Config, t target) (*grpcSender, error) {
	tr := &http2.Transport{
		// A collector that stops answering is found out by a ping, not by TCP
		// timing out minutes later.
		ReadIdleTimeout: 30 * time.Second,
		PingTimeout:     10 * time.Second,
	}
	scheme := "https"
	if t.tls {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		tc.NextProtos = []string{"h2"}
		tr.TLSClientConfig = tc
	} else {
		// h2c with prior knowledge, as gRPC speaks it without TLS.
		scheme = "http"
		tr.AllowHTTP = true
		dial := rawDialer(&net.Dialer{})
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, network, addr)
		}
	}
	u := &url.URL{Scheme: scheme, Host: t.grpcAddr, Path: exportMethod}
	if _, _, err := net.SplitHostPort(t.grpcAddr); err != nil {
		return nil, fmt.Errorf("%w: grpc endpoint %q: %w", ErrInvalidConfig, t.grpcAddr, err)
	}
	h := make(http.Header, len(cfg.Headers)+4)
	for k, v := range cfg.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/grpc+proto")
	h.Set("Te", "trailers")
	h.Set("User-Agent", userAgent)
	s := &grpcSender{url: u.String(), client: &http.Client{Transport: tr}, tr: tr, headers: h}
	if cfg.Compression == CompressionGzip {
		h.Set("Grpc-Encoding", "gzip")
		s.gz = newGzipper()
	}
	return s, nil
}

func (s *grpcSender) send(ctx context.Context, p *payload) (partialSuccess, error) {
	msg := p.bytes()
	var compressed []byte
	s.prefix[0] = 0
	if s.gz != nil {
		var err error
		if msg, err = s.gz.compress(msg); err != nil {
			return partialSuccess{}, err
		}
		compressed = msg
		s.prefix[0] = 1 // compressed, with the grpc-encoding of the request
	}
	binary.BigEndian.PutUint32(s.prefix[1:], uint32(len(msg)))
	rb := newAttemptBody(s.prefix, p, compressed)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, rb)
	if err != nil {
		rb.Close()
		return partialSuccess{}, fmt.Errorf("otlp grpc request: %w", err)
	}
	hr.ContentLength = int64(len(s.prefix) + len(msg))
	hr.Header = s.headers.Clone()
	if d, ok := ctx.Deadline(); ok {
		hr.Header.Set("Grpc-Timeout", grpcTimeout(time.Until(d)))
	}
	resp, err := s.client.Do(hr)
	if err != nil {
		// Refused, reset, timed out: the collector may be back soon.
		code := codeUnavailable
		if ctx.Err() != nil {
			code = codeDeadlineExceeded
		}
		return partialSuccess{}, grpcError(code, err.Error(), nil)
	}
	defer resp.Body.Close()
	return readGRPCResponse(resp)
}

func (s *grpcSender) close() error {
	s.tr.CloseIdleConnections()
	return nil
}

// readGRPCResponse reads an Export response: its message, if any, and the
// status from the trailers (or the header, for a trailers-only response).
func readGRPCResponse(resp *http.Response) (partialSuccess, error) {
	if resp.StatusCode != http.StatusOK {
		// Not from a gRPC server (a proxy, a load balancer): the gRPC spec maps
		// the HTTP status.
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
		return partialSuccess{}, grpcError(codeOfHTTP(resp.StatusCode), "http status "+resp.Status, nil)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
		return partialSuccess{}, grpcError(codeUnknown, fmt.Sprintf("response content-type %q is not gRPC", ct), nil)
	}
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	io.Copy(io.Discard, resp.Body) // to the end, where the trailers are
	st := resp.Trailer
	if len(st.Values("Grpc-Status")) == 0 {
		st = resp.Header // trailers-only
	}
	raw := st.Get("Grpc-Status")
	if raw == "" {
		// The stream ended without a status: broken on the way, so it may
		// well work again.
		msg := "response ended without a grpc-status"
		if readErr != nil {
			msg += ": " + readErr.Error()
		}
		return partialSuccess{}, grpcError(codeUnavailable, msg, nil)
	}
	code, err := strconv.Atoi(raw)
	if err != nil {
		return partialSuccess{}, grpcError(codeUnknown, "malformed grpc-status "+strconv.Quote(raw), nil)
	}
	if code != codeOK {
		return partialSuccess{}, grpcError(code, decodeGRPCMessage(st.Get("Grpc-Message")), statusDetails(st.Get("Grpc-Status-Details-Bin")))
	}
	ps, err := decodeGRPCMessageBody(body, resp.Header.Get("Grpc-Encoding"))
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

// attemptBody is one attempt's request body: the framing, then the message.
// HTTP/2's transport may write the body after Do returns, and does not close
// it on every path (not after a failed TLS handshake), so the attempt cannot
// wait for it: the body holds a reference to the payload (or, compressed, a
// copy of its own in a pooled buffer) and lets go once read to the end or
// closed; a body the transport just drops leaves its buffer to the collector.
type attemptBody struct {
	mu     sync.Mutex
	prefix [5]byte
	msg    []byte
	off    int
	p      *payload // referenced, when msg is the payload's bytes
	copied *[]byte  // pooled, when msg is a copy
}

func newAttemptBody(prefix [5]byte, p *payload, compressed []byte) *attemptBody {
	a := &attemptBody{prefix: prefix}
	if compressed != nil {
		a.copied = payloadPool.Get(len(compressed))
		copy(*a.copied, compressed)
		a.msg = *a.copied
	} else {
		p.ref()
		a.p, a.msg = p, p.bytes()
	}
	return a
}

func (a *attemptBody) Read(b []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.msg == nil {
		return 0, io.ErrClosedPipe
	}
	n := 0
	if a.off < len(a.prefix) {
		n = copy(b, a.prefix[a.off:])
	}
	if i := a.off + n - len(a.prefix); i >= 0 {
		n += copy(b[n:], a.msg[i:])
	}
	a.off += n
	if a.off == len(a.prefix)+len(a.msg) {
		a.releaseLocked()
		return n, io.EOF
	}
	return n, nil
}

func (a *attemptBody) Close() error {
	a.mu.Lock()
	a.releaseLocked()
	a.mu.Unlock()
	return nil
}

func (a *attemptBody) releaseLocked() {
	switch {
	case a.p != nil:
		a.p.free()
	case a.copied != nil:
		payloadPool.Put(a.copied)
	}
	a.p, a.copied, a.msg = nil, nil, nil
}
