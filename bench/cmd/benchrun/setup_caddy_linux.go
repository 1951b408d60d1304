package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// caddyfile is one Caddy of the chain, with OpenTelemetry tracing on: each
// request gets a server span per proxy, exported over OTLP/gRPC to the receiver
// listening on loopback in the pod (OTEL_EXPORTER_OTLP_ENDPOINT), sampled
// always (the SDK's default sampler).
const caddyfile = `{
	admin off
	auto_https off
	persist_config off
	servers {
		protocols h1 h2c
	}
}
http://:%[1]d {
	tracing {
		span %[5]s-http
	}
	reverse_proxy %[2]s
}
http://:%[3]d {
	tracing {
		span %[5]s-grpc
	}
	reverse_proxy h2c://%[4]s
}
`

func newCaddy(caddyBin string) *chain {
	return &chain{kind: "caddy", tracing: true, command: func(e *env, leg chainLeg) (*exec.Cmd, error) {
		dir := filepath.Join(e.cfg.workDir, "caddy-"+leg.side)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "Caddyfile")
		text := fmt.Sprintf(caddyfile, leg.httpPort, leg.httpUp, leg.grpcPort, leg.grpcUp, leg.side)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return nil, err
		}
		cmd := exec.Command(caddyBin, "run", "--config", conf, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(),
			"HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, // keep Caddy's state in the work dir
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
			"OTEL_SERVICE_NAME=caddy-"+leg.side,
		)
		return cmd, nil
	}}
}
