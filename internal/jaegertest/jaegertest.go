// Package jaegertest runs a real Jaeger v2 all-in-one (in-memory storage, loopback
// only, free ports) for tests, and queries it the way a user's UI would: through
// the query service's /api/services and /api/traces.
//
// The binary is built once by `make jaeger` (scripts/jaeger.sh build) into
// ${HOPTRACE_CACHE:-~/.cache/hoptrace}/bin/jaeger; HOPTRACE_JAEGER_BIN overrides the
// path. Without it, tests skip — or fail when HOPTRACE_REQUIRE_PRIVILEGED=1 or CI is
// set, so that CI cannot pass by skipping.
//
// The configuration is jaeger.yaml in this directory, shared with
// scripts/jaeger.sh.
package jaegertest

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

//go:embed jaeger.yaml
var configYAML []byte

// ErrNoBinary means the Jaeger binary has not been built.
var ErrNoBinary = errors.New("jaeger binary not built")

// BinaryPath returns where the Jaeger binary is expected: $HOPTRACE_JAEGER_BIN, else
// ${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}/bin/jaeger.
func BinaryPath() string {
	if p := os.Getenv("HOPTRACE_JAEGER_BIN"); p != "" {
		return p
	}
	cache := os.Getenv("HOPTRACE_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache", "hoptrace")
	}
	return filepath.Join(cache, "bin", "jaeger")
}

// Binary returns BinaryPath if an executable is there, else an error wrapping
// ErrNoBinary.
func Binary() (string, error) {
	p := BinaryPath()
	fi, err := os.Stat(p)
	if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%w: nothing executable at %s", ErrNoBinary, p)
	}
	return p, nil
}

// requireBinary skips t without the binary, unless the environment demands that
// everything runs.
func requireBinary(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err == nil {
		return bin
	}
	if os.Getenv("HOPTRACE_REQUIRE_PRIVILEGED") == "1" || os.Getenv("CI") != "" {
		t.Fatalf("jaegertest: %v; `make jaeger` (scripts/jaeger.sh build) builds it", err)
	}
	t.Skipf("jaegertest: %v; `make jaeger` (scripts/jaeger.sh build) builds it", err)
	return ""
}

// Ports are the loopback ports one Jaeger listens on.
type Ports struct {
	OTLPGRPC, OTLPHTTP, Query, QueryGRPC, Zipkin, Health, Metrics int
}

// env is the configuration's view of the ports (see jaeger.yaml).
func (p Ports) env() []string {
	return []string{
		"JAEGER_OTLP_GRPC_PORT=" + strconv.Itoa(p.OTLPGRPC),
		"JAEGER_OTLP_HTTP_PORT=" + strconv.Itoa(p.OTLPHTTP),
		"JAEGER_QUERY_PORT=" + strconv.Itoa(p.Query),
		"JAEGER_QUERY_GRPC_PORT=" + strconv.Itoa(p.QueryGRPC),
		"JAEGER_ZIPKIN_PORT=" + strconv.Itoa(p.Zipkin),
		"JAEGER_HEALTH_PORT=" + strconv.Itoa(p.Health),
		"JAEGER_METRICS_PORT=" + strconv.Itoa(p.Metrics),
	}
}

// freePorts reserves distinct free loopback ports by holding listeners on all of
// them at once, then releases them for Jaeger. Another process could take one in
// between; Start then fails with Jaeger's bind error in its log.
func freePorts() (Ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var nums [7]int
	for i := range nums {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Ports{}, fmt.Errorf("reserve a loopback port: %w", err)
		}
		ls = append(ls, l)
		nums[i] = l.Addr().(*net.TCPAddr).Port
	}
	return Ports{nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], nums[6]}, nil
}
