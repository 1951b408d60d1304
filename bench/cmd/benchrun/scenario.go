package main

import (
	"fmt"
	"slices"

	"github.com/hoptrace/hoptrace/bench"
)

// scenario is one fortio load shape.
type scenario struct {
	name      string
	grpc      bool    // gRPC unary ping instead of HTTP/1.1 GET /echo
	keepalive bool    // HTTP: reuse connections; false: one connection per request
	qps       float64 // 0: as fast as the setup answers (closed loop)
	conns     int
	setups    []string // only these setups; nil: all
}

// hoptraceSetups are the setups whose agent memory is reported at 1,000
// connections.
var hoptraceSetups = []string{"hoptrace-100", "hoptrace-0"}

// scenarios is the matrix every setup runs, in order.
var scenarios = []scenario{
	{name: "http-1k", keepalive: true, qps: 1000, conns: 4},
	{name: "http-5k", keepalive: true, qps: 5000, conns: 16},
	{name: "http-max", keepalive: true, conns: 16},
	{name: "http-close-1k", qps: 1000, conns: 4},
	{name: "http-close-5k", qps: 5000, conns: 16},
	{name: "http-close-max", conns: 16},
	{name: "grpc-1k", grpc: true, qps: 1000, conns: 4},
	{name: "grpc-5k", grpc: true, qps: 5000, conns: 16},
	{name: "grpc-max", grpc: true, conns: 16},
	// Memory with many open connections: a modest rate spread over 1,000
	// keep-alive connections.
	{name: "http-conn1000", keepalive: true, qps: 2000, conns: 1000, setups: hoptraceSetups},
}

func (s scenario) runsOn(setup string) bool {
	return s.setups == nil || slices.Contains(s.setups, setup)
}

// fortioArgs are the `fortio load` arguments for s against target (an http://
// URL, or host:port for gRPC), writing its JSON result to out.
func (s scenario) fortioArgs(target, out string, seconds float64) []string {
	args := []string{"load", "-quiet", "-json", out,
		"-p", bench.FortioPercentiles,
		// 1µs histogram resolution: fortio's default of 1ms would interpolate
		// sub-millisecond percentiles inside a single bucket.
		"-r", "0.000001",
		"-t", fmt.Sprintf("%gs", seconds),
		"-c", fmt.Sprint(s.conns),
		"-qps", fmt.Sprint(s.qps),
	}
	if s.qps > 0 {
		// Spread the connections' requests over time instead of firing them
		// in lockstep bursts of -c requests.
		args = append(args, "-uniform")
	}
	if s.grpc {
		return append(args, "-grpc", "-ping", target)
	}
	if !s.keepalive {
		args = append(args, "-keepalive=false")
	}
	return append(args, target)
}
