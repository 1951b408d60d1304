package exporter

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by every configuration error, from ConfigFromEnv,
// flag parsing and New.
var ErrInvalidConfig = errors.New("invalid exporter configuration")

// Protocol is an OTLP transport, named as OTEL_EXPORTER_OTLP_PROTOCOL names it.
type Protocol string

const (
	ProtocolGRPC         Protocol = "grpc"
	ProtocolHTTPProtobuf Protocol = "http/protobuf"
)

// Compression values, as OTEL_EXPORTER_OTLP_COMPRESSION names them.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
)

// Default endpoints of the OpenTelemetry specification. The HTTP one is a base URL:
// "/v1/traces" is appended.
const (
	DefaultGRPCEndpoint = "http://localhost:4317"
	DefaultHTTPEndpoint = "http://localhost:4318"
	httpTracesPath      = "/v1/traces"
)

// Config configures an Exporter. The zero value of a field means its default (see
// DefaultConfig), so a Config built by hand needs only the fields it changes.
type Config struct {
	// Protocol is ProtocolGRPC (default) or ProtocolHTTPProtobuf. The SDK spec makes
	// http/protobuf the default; hoptrace follows the collectors it targets instead.
	Protocol Protocol

	// Endpoint is the base endpoint, like OTEL_EXPORTER_OTLP_ENDPOINT: for gRPC a URL
	// (http:// is plaintext, https:// is TLS) or host:port (TLS unless Insecure); for
	// HTTP a URL to which "/v1/traces" is appended. Empty: the protocol's default.
	Endpoint string
	// TracesEndpoint, like OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, wins over Endpoint and is
	// used as-is (nothing is appended for HTTP).
	TracesEndpoint string

	// Insecure selects plaintext gRPC for an endpoint without a scheme. The URL scheme
	// decides otherwise, as the spec says.
	Insecure bool
	// CAFile is a PEM file of CA certificates to verify the collector with, instead of
	// the system roots.
	CAFile string
	// ClientCertFile and ClientKeyFile are a PEM client certificate and key for mTLS.
	ClientCertFile string
	ClientKeyFile  string

	// Headers are sent with every export request (auth tokens, tenant ids).
	Headers map[string]string
	// Compression is CompressionGzip or CompressionNone (default).
	Compression string
	// Timeout bounds one export attempt (default 10s).
	Timeout time.Duration

	// MaxQueueSize bounds the spans waiting for export (default 2048). When the queue
	// is full, Record drops the span it is given.
	MaxQueueSize int
	// MaxBatchSize is the most spans in one export request (default 512, at most
	// MaxQueueSize).
	MaxBatchSize int
	// BatchTimeout is how long a span may wait for its batch to fill (default 5s).
	BatchTimeout time.Duration

	// Retry bounds the retries of one batch.
	Retry RetryConfig

	// Logger receives export warnings and errors. Nil means slog.Default(): a failing
	// export is an operational problem that must not vanish silently; tests and
	// embedders that want quiet pass a discard logger.
	Logger *slog.Logger
}

// RetryConfig is the exponential backoff between attempts to export one batch.
type RetryConfig struct {
	// Disabled makes every failure final.
	Disabled bool
	// InitialInterval is the first backoff (default 1s). Each next one is 1.5 times
	// longer, randomized by ±50%, up to MaxInterval (default 30s).
	InitialInterval time.Duration
	MaxInterval     time.Duration
	// MaxElapsedTime gives up on a batch once this much time has passed since its
	// first attempt (default 1m).
	MaxElapsedTime time.Duration
}

// DefaultConfig returns the defaults: gRPC to localhost:4317, plaintext, no
// compression, 10s timeout, OTEL_BSP_* defaults for the batching.
func DefaultConfig() Config {
	return Config{
		Protocol:     ProtocolGRPC,
		Compression:  CompressionNone,
		Timeout:      10 * time.Second,
		MaxQueueSize: 2048,
		MaxBatchSize: 512,
		BatchTimeout: 5 * time.Second,
		Retry: RetryConfig{
			InitialInterval: time.Second,
			MaxInterval:     30 * time.Second,
			MaxElapsedTime:  time.Minute,
		},
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Protocol == "" {
		c.Protocol = d.Protocol
	}
	if c.Compression == "" {
		c.Compression = d.Compression
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxQueueSize == 0 {
		c.MaxQueueSize = d.MaxQueueSize
	}
	if c.MaxBatchSize == 0 {
		c.MaxBatchSize = d.MaxBatchSize
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = d.BatchTimeout
	}
	if c.MaxBatchSize > c.MaxQueueSize && c.MaxQueueSize > 0 {
		// A batch larger than the queue could never fill; the SDKs clamp it too.
		c.MaxBatchSize = c.MaxQueueSize
	}
	if c.Retry.InitialInterval == 0 {
		c.Retry.InitialInterval = d.Retry.InitialInterval
	}
	if c.Retry.MaxInterval == 0 {
		c.Retry.MaxInterval = d.Retry.MaxInterval
	}
	if c.Retry.MaxElapsedTime == 0 {
		c.Retry.MaxElapsedTime = d.Retry.MaxElapsedTime
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	switch c.Protocol {
	case ProtocolGRPC, ProtocolHTTPProtobuf:
	default:
		return fmt.Errorf("%w: protocol %q: want %q or %q", ErrInvalidConfig, c.Protocol, ProtocolGRPC, ProtocolHTTPProtobuf)
	}
	switch c.Compression {
	case CompressionNone, CompressionGzip:
	default:
		return fmt.Errorf("%w: compression %q: want %q or %q", ErrInvalidConfig, c.Compression, CompressionGzip, CompressionNone)
	}
	if c.Timeout < 0 || c.BatchTimeout < 0 || c.Retry.InitialInterval < 0 || c.Retry.MaxInterval < 0 || c.Retry.MaxElapsedTime < 0 {
		return fmt.Errorf("%w: negative duration", ErrInvalidConfig)
	}
	if c.MaxQueueSize < 0 || c.MaxBatchSize < 0 {
		return fmt.Errorf("%w: negative queue or batch size", ErrInvalidConfig)
	}

	if (c.ClientCertFile == "") != (c.ClientKeyFile == "") {
		return fmt.Errorf("%w: client certificate and key go together", ErrInvalidConfig)
	}
	if _, err := c.target(); err != nil {
		return err
	}
	return nil
}

// target is where the exporter sends, resolved from the endpoints and protocol.
type target struct {
	// grpcAddr is the gRPC dial target (host:port); httpURL the full HTTP URL.
	grpcAddr string
	httpURL  string
	tls      bool
}

func (c Config) target() (target, error) {
	if c.Protocol == ProtocolHTTPProtobuf {
		return c.httpTarget()
	}
	return c.grpcTarget()
}

func (c Config) httpTarget() (target, error) {
	raw, asIs := c.TracesEndpoint, true
	if raw == "" {
		raw, asIs = c.Endpoint, false
	}
	if raw == "" {
		raw = DefaultHTTPEndpoint
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return target{}, fmt.Errorf("%w: http endpoint %q: want an http:// or https:// URL", ErrInvalidConfig, raw)
	}
	if !asIs {
		// The spec appends the signal path to the base path, keeping any prefix a
		// gateway needs (https://gw/otlp -> https://gw/otlp/v1/traces).
		u.Path = strings.TrimSuffix(u.Path, "/") + httpTracesPath
	} else if u.Path == "" {
		u.Path = "/"
	}
	return target{httpURL: u.String(), tls: u.Scheme == "https"}, nil
}

func (c Config) grpcTarget() (target, error) {
	raw := c.TracesEndpoint
	if raw == "" {
		raw = c.Endpoint
	}
	if raw == "" {
		raw = DefaultGRPCEndpoint
	}
	if !strings.Contains(raw, "://") {
		if _, _, ok := strings.Cut(raw, ":"); !ok || strings.ContainsAny(raw, "/?#") {
			return target{}, fmt.Errorf("%w: grpc endpoint %q: want host:port or a URL", ErrInvalidConfig, raw)
		}
		return target{grpcAddr: raw, tls: !c.Insecure}, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return target{}, fmt.Errorf("%w: grpc endpoint %q: want an http:// or https:// URL", ErrInvalidConfig, raw)
	}
	host := u.Host
	if u.Port() == "" {
		// The OTLP/gRPC port, not the scheme's: a collector URL without a port means 4317.
		host += ":4317"
	}
	return target{grpcAddr: host, tls: u.Scheme == "https"}, nil
}

// Describe returns a one-line summary for logs, without header values (they are
// often tokens).
func (c Config) Describe() string {
	c = c.withDefaults()
	t, err := c.target()
	if err != nil {
		return "invalid: " + err.Error()
	}
	where := t.grpcAddr
	if c.Protocol == ProtocolHTTPProtobuf {
		where = t.httpURL
	}
	keys := slices.Sorted(maps.Keys(c.Headers))
	return fmt.Sprintf("otlp %s %s tls=%t compression=%s headers=%v queue=%d batch=%d delay=%s",
		c.Protocol, where, t.tls, c.Compression, keys, c.MaxQueueSize, c.MaxBatchSize, c.BatchTimeout)
}
