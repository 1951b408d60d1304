package main

import (
	"context"
	"fmt"
)

// setup is one way for the client pod to reach the server pod.
type setup interface {
	name() string
	start(ctx context.Context, e *env) error
	stop() error
	// pids are the processes whose CPU and peak memory a run reports: the
	// agent or the peer proxies. None for direct.
	pids() []int
	// target is what fortio in the client pod calls for s.
	target(e *env, s scenario) string
}

// transparentTarget is the server itself: direct, or captured without the
// client knowing (hoptrace, iptables).
func transparentTarget(e *env, s scenario) string {
	if s.grpc {
		return e.serverAddr(grpcPort)
	}
	return "http://" + e.serverAddr(httpPort) + "/echo"
}

// Ports of the explicit proxy chains (nginx, Caddy): the client calls the
// outbound proxy on loopback in its own pod, which calls the inbound proxy in
// the server pod, which calls the server on loopback.
const (
	chainOutHTTP = 15001
	chainOutGRPC = 15002
	chainInHTTP  = 15006
	chainInGRPC  = 15007
)

// reservedPorts are never a connection's own port in the pods: every port a
// setup listens on (fortio's, the chains', iptproxy's 15001 and 15006).
var reservedPorts = fmt.Sprintf("%d,%d,15000-15010", grpcPort, httpPort)

func chainTarget(s scenario) string {
	if s.grpc {
		return fmt.Sprintf("127.0.0.1:%d", chainOutGRPC)
	}
	return fmt.Sprintf("http://127.0.0.1:%d/echo", chainOutHTTP)
}

// direct: no proxy at all, the physical limit of this machine.
type direct struct{}

func (direct) name() string                      { return "direct" }
func (direct) start(context.Context, *env) error { return nil }
func (direct) stop() error                       { return nil }
func (direct) pids() []int                       { return nil }
func (direct) target(e *env, s scenario) string  { return transparentTarget(e, s) }
