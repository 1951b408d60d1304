package exporter

import (
	"errors"
	"io"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	def := DefaultConfig()
	tests := []struct {
		name string
		env  map[string]string
		want func(*Config) // applied to DefaultConfig
	}{
		{name: "defaults", env: nil, want: func(*Config) {}},
		{
			name: "generic variables",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT":    "https://collector:4317",
				"OTEL_EXPORTER_OTLP_PROTOCOL":    "grpc",
				"OTEL_EXPORTER_OTLP_HEADERS":     "api-key=secret,tenant=a",
				"OTEL_EXPORTER_OTLP_TIMEOUT":     "2500",
				"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
				"OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
				"OTEL_EXPORTER_OTLP_INSECURE":    "TRUE",
			},
			want: func(c *Config) {
				c.Endpoint = "https://collector:4317"
				c.Headers = map[string]string{"api-key": "secret", "tenant": "a"}
				c.Timeout = 2500 * time.Millisecond
				c.Compression = CompressionGzip
				c.CAFile = "/etc/ca.pem"
				c.Insecure = true
			},
		},
		{
			name: "traces variables replace generic ones",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT":                  "http://generic:4318",
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":           "http://traces:4318/custom",
				"OTEL_EXPORTER_OTLP_PROTOCOL":                  "grpc",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL":           "http/protobuf",
				"OTEL_EXPORTER_OTLP_HEADERS":                   "a=1,b=2",
				"OTEL_EXPORTER_OTLP_TRACES_HEADERS":            "c=3",
				"OTEL_EXPORTER_OTLP_TIMEOUT":                   "1000",
				"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT":            "500",
				"OTEL_EXPORTER_OTLP_COMPRESSION":               "none",
				"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION":        "gzip",
				"OTEL_EXPORTER_OTLP_INSECURE":                  "true",
				"OTEL_EXPORTER_OTLP_TRACES_INSECURE":           "false",
				"OTEL_EXPORTER_OTLP_CERTIFICATE":               "/generic.pem",
				"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE":        "/traces.pem",
				"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY":         "/key.pem",
				"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE":        "/cert.pem",
				"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": "",
			},
			want: func(c *Config) {
				c.Endpoint = "http://generic:4318"
				c.TracesEndpoint = "http://traces:4318/custom"
				c.Protocol = ProtocolHTTPProtobuf
				c.Headers = map[string]string{"c": "3"}
				c.Timeout = 500 * time.Millisecond
				c.Compression = CompressionGzip
				c.Insecure = false
				c.CAFile = "/traces.pem"
				c.ClientKeyFile = "/key.pem"
				c.ClientCertFile = "/cert.pem" // empty TRACES_ value counts as unset
			},
		},
		{
			name: "headers are url-decoded and trimmed",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_HEADERS": " Authorization = Bearer%20abc%3D%3D , x-scope-orgid=t%2C1,, empty= ",
			},
			want: func(c *Config) {
				c.Headers = map[string]string{"Authorization": "Bearer abc==", "x-scope-orgid": "t,1", "empty": ""}
			},
		},
		{
			name: "batch processor variables",
			env: map[string]string{
				"OTEL_BSP_MAX_QUEUE_SIZE":        "10000",
				"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1000",
				"OTEL_BSP_SCHEDULE_DELAY":        "200",
			},
			want: func(c *Config) {
				c.MaxQueueSize = 10000
				c.MaxBatchSize = 1000
				c.BatchTimeout = 200 * time.Millisecond
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromEnv(envFunc(tt.env))
			if err != nil {
				t.Fatalf("ConfigFromEnv: %v", err)
			}
			want := def
			tt.want(&want)
			assertConfig(t, got, want)
		})
	}
}

func TestConfigFromEnvErrors(t *testing.T) {
	tests := map[string]map[string]string{
		"protocol":          {"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
		"http/json":         {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
		"timeout not ms":    {"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"},
		"negative timeout":  {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-1"},
		"compression":       {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
		"insecure":          {"OTEL_EXPORTER_OTLP_INSECURE": "yes"},
		"header without =":  {"OTEL_EXPORTER_OTLP_HEADERS": "a=1,b"},
		"header empty key":  {"OTEL_EXPORTER_OTLP_HEADERS": "=1"},
		"header bad escape": {"OTEL_EXPORTER_OTLP_HEADERS": "a=%zz"},
		"queue size":        {"OTEL_BSP_MAX_QUEUE_SIZE": "0"},
		"batch size":        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "many"},
		"delay":             {"OTEL_BSP_SCHEDULE_DELAY": "1.5"},
	}
	for name, env := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ConfigFromEnv(envFunc(env))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want an error wrapping ErrInvalidConfig", err)
			}
			for k := range env {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("error %q does not name %s", err, k)
				}
			}
		})
	}
}

func TestBindFlagsOverrideEnv(t *testing.T) {
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://env-traces:4318/v1/traces",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/protobuf",
		"OTEL_EXPORTER_OTLP_HEADERS":         "env=1",
		"OTEL_EXPORTER_OTLP_TIMEOUT":         "1000",
		"OTEL_BSP_MAX_QUEUE_SIZE":            "100",
	}
	tests := []struct {
		name string
		args []string
		want func(*Config) // applied to the env config
	}{
		{name: "no flags keep env", args: nil, want: func(*Config) {}},
		{
			name: "endpoint flag beats traces endpoint from env",
			args: []string{"--otlp-endpoint=http://flag:4318"},
			want: func(c *Config) { c.Endpoint, c.TracesEndpoint = "http://flag:4318", "" },
		},
		{
			name: "every flag",
			args: []string{
				"--otlp-traces-endpoint=collector:4317", "--otlp-protocol=grpc", "--otlp-headers=x-token=a%20b",
				"--otlp-timeout=3s", "--otlp-compression=gzip", "--otlp-insecure", "--otlp-certificate=/ca.pem",
				"--otlp-client-certificate=/c.pem", "--otlp-client-key=/k.pem", "--otlp-queue-size=5000",
				"--otlp-batch-size=100", "--otlp-batch-delay=250ms", "--otlp-retry-max-elapsed=5m",
			},
			want: func(c *Config) {
				c.TracesEndpoint = "collector:4317"
				c.Protocol = ProtocolGRPC
				c.Headers = map[string]string{"x-token": "a b"}
				c.Timeout = 3 * time.Second
				c.Compression = CompressionGzip
				c.Insecure = true
				c.CAFile, c.ClientCertFile, c.ClientKeyFile = "/ca.pem", "/c.pem", "/k.pem"
				c.MaxQueueSize, c.MaxBatchSize, c.BatchTimeout = 5000, 100, 250*time.Millisecond
				c.Retry.MaxElapsedTime = 5 * time.Minute
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ConfigFromEnv(envFunc(env))
			if err != nil {
				t.Fatal(err)
			}
			want := cfg
			want.Headers = maps.Clone(cfg.Headers)
			tt.want(&want)
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			cfg.BindFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("parse %v: %v", tt.args, err)
			}
			assertConfig(t, cfg, want)
		})
	}
}

func TestBindFlagsRejectsBadValues(t *testing.T) {
	for _, arg := range []string{"--otlp-protocol=http/json", "--otlp-compression=br", "--otlp-headers=novalue"} {
		cfg := DefaultConfig()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.BindFlags(fs)
		if err := fs.Parse([]string{arg}); err == nil || !strings.Contains(err.Error(), ErrInvalidConfig.Error()) {
			t.Errorf("%s: got %v, want an invalid configuration error", arg, err)
		}
	}
}

func TestTarget(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want target
	}{
		{"grpc default", Config{}, target{grpcAddr: "localhost:4317"}},
		{"http default", Config{Protocol: ProtocolHTTPProtobuf}, target{httpURL: "http://localhost:4318/v1/traces"}},
		{"grpc https url", Config{Endpoint: "https://c.example:443"}, target{grpcAddr: "c.example:443", tls: true}},
		{"grpc url without port", Config{Endpoint: "http://c.example"}, target{grpcAddr: "c.example:4317"}},
		{"grpc host:port is tls", Config{Endpoint: "c.example:4317"}, target{grpcAddr: "c.example:4317", tls: true}},
		{"grpc host:port insecure", Config{Endpoint: "c.example:4317", Insecure: true}, target{grpcAddr: "c.example:4317"}},
		{"grpc url ignores insecure", Config{Endpoint: "https://c.example:4317", Insecure: true}, target{grpcAddr: "c.example:4317", tls: true}},
		{"grpc traces endpoint wins", Config{Endpoint: "http://a:1", TracesEndpoint: "http://b:2"}, target{grpcAddr: "b:2"}},
		{"http base gets path", Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "https://gw.example/otlp/"}, target{httpURL: "https://gw.example/otlp/v1/traces", tls: true}},
		{"http base without path", Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://c:4318"}, target{httpURL: "http://c:4318/v1/traces"}},
		{"http traces endpoint as-is", Config{Protocol: ProtocolHTTPProtobuf, Endpoint: "http://a:4318", TracesEndpoint: "http://b:9999/custom/path"}, target{httpURL: "http://b:9999/custom/path"}},
		{"http traces endpoint without path", Config{Protocol: ProtocolHTTPProtobuf, TracesEndpoint: "http://b:9999"}, target{httpURL: "http://b:9999/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg.withDefaults()
			got, err := cfg.target()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	bad := map[string]Config{
		"protocol":           {Protocol: "udp"},
		"compression":        {Compression: "lz4"},
		"http endpoint":      {Protocol: ProtocolHTTPProtobuf, Endpoint: "collector:4318"},
		"grpc endpoint":      {Endpoint: "collector"},
		"grpc scheme":        {Endpoint: "ftp://collector:21"},
		"negative queue":     {MaxQueueSize: -1},
		"cert without key":   {ClientCertFile: "/c.pem"},
		"negative timeout":   {Timeout: -time.Second},
		"missing CA file":    {Endpoint: "https://c:4317", CAFile: "/nonexistent/ca.pem"},
		"CA file is not PEM": {Endpoint: "https://c:4317", CAFile: "config_test.go"},
		"http missing CA":    {Protocol: ProtocolHTTPProtobuf, Endpoint: "https://c:4318", CAFile: "/nonexistent"},
	}
	for name, cfg := range bad {
		t.Run(name, func(t *testing.T) {
			cfg.Logger = quiet
			e, err := New(cfg)
			if err == nil {
				e.Shutdown(t.Context())
				t.Fatal("New accepted a bad configuration")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestBatchSizeClampedToQueue(t *testing.T) {
	cfg, err := ConfigFromEnv(envFunc(map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "100"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.withDefaults().MaxBatchSize; got != 100 {
		t.Errorf("batch size %d with a queue of 100, want 100", got)
	}
}

func TestDescribeHidesHeaderValues(t *testing.T) {
	d := Config{Headers: map[string]string{"authorization": "Bearer s3cret"}}.Describe()
	if strings.Contains(d, "s3cret") || !strings.Contains(d, "authorization") {
		t.Errorf("Describe() = %q: want header names without values", d)
	}
}

func assertConfig(t *testing.T, got, want Config) {
	t.Helper()
	if !maps.Equal(got.Headers, want.Headers) {
		t.Errorf("headers = %v, want %v", got.Headers, want.Headers)
	}
	got.Headers, want.Headers = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config:\n got %+v\nwant %+v", got, want)
	}
}
