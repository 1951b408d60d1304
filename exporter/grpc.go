package exporter

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// userAgent identifies the exporter to collectors, as the SDK exporters do.
const userAgent = "hoptrace-otlp-exporter"

// exportMethod is opentelemetry.proto.collector.trace.v1.TraceService's Export.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

type grpcSender struct {
	conn     *grpc.ClientConn
	md       metadata.MD
	callOpts []grpc.CallOption
}

func newGRPCSender(cfg Config, t target) (*grpcSender, error) {
	creds := insecure.NewCredentials()
	if t.tls {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tc)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent(userAgent),
		// gRPC's default reconnect backoff grows to 2 minutes; a restarted collector
		// should see our spans within seconds, and our own retry loop paces requests.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	conn, err := grpc.NewClient(t.grpcAddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: grpc client for %s: %w", ErrInvalidConfig, t.grpcAddr, err)
	}
	s := &grpcSender{conn: conn, md: metadata.New(cfg.Headers), callOpts: []grpc.CallOption{grpc.ForceCodecV2(payloadCodec{})}}
	if cfg.Compression == CompressionGzip {
		s.callOpts = append(s.callOpts, grpc.UseCompressor(gzip.Name))
	}
	return s, nil
}

func (s *grpcSender) send(ctx context.Context, p *payload) (partialSuccess, error) {
	if s.conn.GetState() == connectivity.TransientFailure {
		// Our retry loop already paced this attempt; without this, gRPC would wait
		// out its own reconnect backoff and fail the attempt at once, delaying a
		// restarted collector's first batch by seconds.
		s.conn.ResetConnectBackoff()
	}
	if len(s.md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, s.md)
	}
	var resp partialSuccess
	if err := s.conn.Invoke(ctx, exportMethod, p, &resp, s.callOpts...); err != nil {
		return partialSuccess{}, grpcError(err)
	}
	return resp, nil
}

func (s *grpcSender) close() error { return s.conn.Close() }

// payloadCodec sends an encoded payload as it is and decodes the response's
// partial success. It is named "proto" so that the content type is
// application/grpc+proto.
type payloadCodec struct{}

func (payloadCodec) Marshal(v any) (mem.BufferSlice, error) {
	p, ok := v.(*payload)
	if !ok {
		return nil, fmt.Errorf("payload codec cannot marshal %T", v)
	}
	p.buf.Ref() // gRPC's reference, freed by gRPC once written
	return mem.BufferSlice{p.buf}, nil
}

func (payloadCodec) Unmarshal(data mem.BufferSlice, v any) error {
	ps, ok := v.(*partialSuccess)
	if !ok {
		return fmt.Errorf("payload codec cannot unmarshal into %T", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	var err error
	*ps, err = decodeExportResponse(buf.ReadOnlyData())
	return err
}

func (payloadCodec) Name() string { return "proto" }

// grpcError classifies a failed Export call as the OTLP/gRPC spec says.
func grpcError(err error) error {
	st := status.Convert(err)
	xe := &exportError{err: fmt.Errorf("otlp grpc export: %w", err)}
	delay, hasRetryInfo := retryDelay(st.Proto().GetDetails())
	xe.throttle = delay
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss:
		xe.retryable = true
	case codes.ResourceExhausted:
		// Only a server that says when to come back expects us to: without RetryInfo
		// the exhaustion may be permanent (a message too large).
		xe.retryable = hasRetryInfo
	}
	return xe
}
