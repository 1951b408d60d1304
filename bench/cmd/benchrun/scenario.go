package main

import (
	"fmt"
	"slices"

	"github.com/hoptrace/hoptrace/bench"
)

// scenario is one fortio load shape.
type scenario struct {
	name      string
	what      string  // for the report
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
	{name: "http-1k", what: "HTTP/1.1 keep-alive, 1,000 req/s over 4 connections",
		keepalive: true, qps: 1000, conns: 4},
	{name: "http-5k", what: "HTTP/1.1 keep-alive, 5,000 req/s over 16 connections",
		keepalive: true, qps: 5000, conns: 16},
	{name: "http-max", what: "HTTP/1.1 keep-alive, as fast as possible, 16 connections",
		keepalive: true, conns: 16},
	{name: "http-close-1k", what: "one connection per request (`-keepalive=false`), 1,000 req/s, 4 at a time",
		qps: 1000, conns: 4},
	{name: "http-close-5k", what: "one connection per request, 5,000 req/s, 16 at a time",
		qps: 5000, conns: 16},
	{name: "http-close-max", what: "one connection per request, as fast as possible, 16 at a time: new connections per second",
		conns: 16},
	{name: "grpc-1k", what: "gRPC unary ping, 1,000 req/s over 4 connections",
		grpc: true, qps: 1000, conns: 4},
	{name: "grpc-5k", what: "gRPC unary ping, 5,000 req/s over 16 connections",
		grpc: true, qps: 5000, conns: 16},
	{name: "grpc-max", what: "gRPC unary ping, as fast as possible, 16 connections",
		grpc: true, conns: 16},
	// Memory with many open connections: a modest rate spread over 1,000
	// keep-alive connections.
	{name: "http-conn1000", what: "HTTP/1.1 keep-alive, 2,000 req/s spread over 1,000 open connections (agent memory)",
		keepalive: true, qps: 2000, conns: 1000, setups: hoptraceSetups},
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
