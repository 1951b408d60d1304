package exporter

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// BindFlags registers --otlp-* flags on fs that write into c. Call it after
// ConfigFromEnv: the flags' defaults are c's current values, so a flag given on the
// command line wins over the environment and an absent one leaves it alone.
//
//	cfg, err := exporter.ConfigFromEnv(os.Getenv)
//	cfg.BindFlags(cmd.Flags())
//	// after parsing: exporter.New(cfg)
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.Var(&endpointFlag{c: c}, "otlp-endpoint",
		"OTLP base endpoint (like OTEL_EXPORTER_OTLP_ENDPOINT; http gets /v1/traces appended; default "+DefaultGRPCEndpoint+" for grpc, "+DefaultHTTPEndpoint+" for http/protobuf)")
	fs.StringVar(&c.TracesEndpoint, "otlp-traces-endpoint", c.TracesEndpoint,
		"OTLP traces endpoint, used as-is (like OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)")
	fs.Var((*protocolFlag)(&c.Protocol), "otlp-protocol", "OTLP protocol: grpc or http/protobuf")
	fs.Var(&headersFlag{m: &c.Headers}, "otlp-headers", "headers sent with every export: key=value,... (values url-decoded)")
	fs.DurationVar(&c.Timeout, "otlp-timeout", c.Timeout, "timeout of one export attempt")
	fs.Var((*compressionFlag)(&c.Compression), "otlp-compression", "compression: gzip or none")
	fs.BoolVar(&c.Insecure, "otlp-insecure", c.Insecure, "plaintext gRPC for an endpoint without http:// or https://")
	fs.StringVar(&c.CAFile, "otlp-certificate", c.CAFile, "PEM file of CA certificates to verify the collector")
	fs.StringVar(&c.ClientCertFile, "otlp-client-certificate", c.ClientCertFile, "PEM client certificate for mTLS")
	fs.StringVar(&c.ClientKeyFile, "otlp-client-key", c.ClientKeyFile, "PEM client key for mTLS")
	fs.IntVar(&c.MaxQueueSize, "otlp-queue-size", c.MaxQueueSize, "spans held for export; more are dropped")
	fs.IntVar(&c.MaxBatchSize, "otlp-batch-size", c.MaxBatchSize, "most spans in one export request")
	fs.DurationVar(&c.BatchTimeout, "otlp-batch-delay", c.BatchTimeout, "longest wait for a batch to fill")
	fs.DurationVar(&c.Retry.MaxElapsedTime, "otlp-retry-max-elapsed", c.Retry.MaxElapsedTime, "give up on a batch after retrying this long")
}

// endpointFlag sets the base endpoint and clears an environment-provided traces
// endpoint, which would otherwise win over the flag.
type endpointFlag struct{ c *Config }

func (f *endpointFlag) String() string {
	if f.c == nil {
		return ""
	}
	return f.c.Endpoint
}
func (f *endpointFlag) Type() string { return "url" }
func (f *endpointFlag) Set(v string) error {
	f.c.Endpoint = v
	f.c.TracesEndpoint = ""
	return nil
}

type protocolFlag Protocol

func (f *protocolFlag) String() string { return string(*f) }
func (f *protocolFlag) Type() string   { return "protocol" }
func (f *protocolFlag) Set(v string) error {
	p, err := parseProtocol(v)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	*f = protocolFlag(p)
	return nil
}

type compressionFlag string

func (f *compressionFlag) String() string { return string(*f) }
func (f *compressionFlag) Type() string   { return "string" }
func (f *compressionFlag) Set(v string) error {
	v = strings.ToLower(v)
	if v != CompressionGzip && v != CompressionNone {
		return fmt.Errorf("%w: compression %q: want gzip or none", ErrInvalidConfig, v)
	}
	*f = compressionFlag(v)
	return nil
}

// headersFlag replaces the headers from the environment: merging would make it
// impossible to drop an environment header from the command line.
type headersFlag struct{ m *map[string]string }

func (f *headersFlag) String() string {
	if f.m == nil || len(*f.m) == 0 {
		return ""
	}
	// Keys only: the values are often tokens and this shows up in --help.
	return strings.Join(slices.Sorted(maps.Keys(*f.m)), ",")
}
func (f *headersFlag) Type() string { return "key=value,..." }
func (f *headersFlag) Set(v string) error {
	h, err := ParseHeaders(v)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	*f.m = h
	return nil
}
