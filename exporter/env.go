package exporter

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ConfigFromEnv returns DefaultConfig overlaid with the OpenTelemetry SDK's
// environment variables, read through getenv (os.Getenv in production):
//
//	OTEL_EXPORTER_OTLP_ENDPOINT            base endpoint; http gets "/v1/traces" appended
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT     traces endpoint, used as-is
//	OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL   grpc | http/protobuf
//	OTEL_EXPORTER_OTLP_[TRACES_]HEADERS    k1=v1,k2=v2 (values url-decoded)
//	OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT    milliseconds per export attempt
//	OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION gzip | none
//	OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE CA file (PEM)
//	OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE, ..._CLIENT_KEY  mTLS (PEM)
//	OTEL_EXPORTER_OTLP_[TRACES_]INSECURE   true | false (gRPC endpoints without a scheme)
//	OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_SCHEDULE_DELAY (ms)
//
// A TRACES_ variable replaces its generic counterpart (headers are not merged). An
// empty variable counts as unset. Unlike the SDKs, which warn and ignore a value they
// cannot parse, ConfigFromEnv fails (wrapping ErrInvalidConfig and naming every bad
// variable): an agent with a mistyped endpoint should not start and export nowhere.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	e := envReader{getenv: getenv}

	c.Endpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	c.TracesEndpoint = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if name, v := e.signal("PROTOCOL"); v != "" {
		p, err := parseProtocol(v)
		e.check(name, v, err)
		c.Protocol = p
	}
	if name, v := e.signal("HEADERS"); v != "" {
		h, err := ParseHeaders(v)
		e.check(name, v, err)
		c.Headers = h
	}
	if name, v := e.signal("TIMEOUT"); v != "" {
		d, err := parseMillis(v)
		e.check(name, v, err)
		c.Timeout = d
	}
	if name, v := e.signal("COMPRESSION"); v != "" {
		c.Compression = strings.ToLower(v)
		if c.Compression != CompressionGzip && c.Compression != CompressionNone {
			e.check(name, v, errors.New("want gzip or none"))
		}
	}
	if name, v := e.signal("INSECURE"); v != "" {
		b, err := parseBool(v)
		e.check(name, v, err)
		c.Insecure = b
	}
	_, c.CAFile = e.signal("CERTIFICATE")
	_, c.ClientCertFile = e.signal("CLIENT_CERTIFICATE")
	_, c.ClientKeyFile = e.signal("CLIENT_KEY")

	if v := getenv("OTEL_BSP_MAX_QUEUE_SIZE"); v != "" {
		n, err := parsePositive(v)
		e.check("OTEL_BSP_MAX_QUEUE_SIZE", v, err)
		c.MaxQueueSize = n
	}
	if v := getenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"); v != "" {
		n, err := parsePositive(v)
		e.check("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", v, err)
		c.MaxBatchSize = n
	}
	if v := getenv("OTEL_BSP_SCHEDULE_DELAY"); v != "" {
		d, err := parseMillis(v)
		e.check("OTEL_BSP_SCHEDULE_DELAY", v, err)
		c.BatchTimeout = d
	}
	if err := errors.Join(e.errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

type envReader struct {
	getenv func(string) string
	errs   []error
}

// signal returns the TRACES_ variable when set, else the generic one, with its name
// for error messages.
func (e *envReader) signal(suffix string) (name, value string) {
	name = "OTEL_EXPORTER_OTLP_TRACES_" + suffix
	if v := e.getenv(name); v != "" {
		return name, v
	}
	name = "OTEL_EXPORTER_OTLP_" + suffix
	return name, e.getenv(name)
}

func (e *envReader) check(name, value string, err error) {
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%w: %s=%q: %w", ErrInvalidConfig, name, value, err))
	}
}

func parseProtocol(v string) (Protocol, error) {
	switch p := Protocol(strings.ToLower(strings.TrimSpace(v))); p {
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		return p, nil
	case "http/json":
		return "", errors.New("http/json is not supported: use grpc or http/protobuf")
	default:
		return "", errors.New("want grpc or http/protobuf")
	}
}

func parseMillis(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a non-negative number of milliseconds")
	}
	return time.Duration(n) * time.Millisecond, nil
}

func parsePositive(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive integer")
	}
	return n, nil
}

// parseBool accepts what the spec allows: true or false, in any case.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New("want true or false")
}

// ParseHeaders parses the OTEL_EXPORTER_OTLP_HEADERS format: comma-separated
// key=value pairs as in W3C Baggage (without properties), with optional whitespace
// around them and percent-encoded keys and values ("Authorization=Bearer%20x").
// Empty list members are skipped.
func ParseHeaders(s string) (map[string]string, error) {
	h := make(map[string]string)
	for member := range strings.SplitSeq(s, ",") {
		member = strings.TrimSpace(member)
		if member == "" {
			continue
		}
		rawKey, rawValue, ok := strings.Cut(member, "=")
		if !ok {
			return nil, fmt.Errorf("header %q: want key=value", member)
		}
		key, err := url.PathUnescape(strings.TrimSpace(rawKey))
		if err != nil || key == "" || strings.ContainsAny(key, " \t\r\n:") {
			return nil, fmt.Errorf("header %q: bad key", member)
		}
		value, err := url.PathUnescape(strings.TrimSpace(rawValue))
		if err != nil || strings.ContainsAny(value, "\r\n") {
			return nil, fmt.Errorf("header %q: bad value", member)
		}
		h[key] = value
	}
	return h, nil
}
