package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/hoptrace/hoptrace/bench"
	"github.com/hoptrace/hoptrace/nodebox"
)

// chainLeg is one proxy of an explicit two-proxy chain: what it listens on and
// where it forwards HTTP/1.1 and gRPC.
type chainLeg struct {
	side               string // "out" (client pod) or "in" (server pod)
	pod                *nodebox.Pod
	httpPort, grpcPort int
	httpUp, grpcUp     string // host:port
}

// chainLegs are the outbound proxy in the client pod, forwarding to the
// inbound proxy in the server pod, forwarding to the server on loopback — the
// four legs of a hoptrace hop, made explicit.
func chainLegs(e *env) [2]chainLeg {
	return [2]chainLeg{
		{side: "out", pod: e.client, httpPort: chainOutHTTP, grpcPort: chainOutGRPC,
			httpUp: e.serverAddr(chainInHTTP), grpcUp: e.serverAddr(chainInGRPC)},
		{side: "in", pod: e.server, httpPort: chainInHTTP, grpcPort: chainInGRPC,
			httpUp: fmt.Sprintf("127.0.0.1:%d", httpPort), grpcUp: fmt.Sprintf("127.0.0.1:%d", grpcPort)},
	}
}

// chain runs a peer proxy (nginx, Caddy) as two sidecars, one per pod.
type chain struct {
	kind    string
	tracing bool // exports spans (Caddy), so the warm-up must produce some
	// command writes the leg's configuration into the work dir and returns
	// the command that runs the proxy with it.
	command func(e *env, leg chainLeg) (*exec.Cmd, error)
	procs   []*proc
}

func (c *chain) name() string                     { return c.kind }
func (c *chain) target(_ *env, s scenario) string { return chainTarget(s) }

// pids are both proxies and their workers.
func (c *chain) pids() []int {
	var out []int
	for _, p := range c.procs {
		out = append(out, bench.WithDescendants(p.pid())...)
	}
	return out
}

func (c *chain) start(ctx context.Context, e *env) error {
	legs := chainLegs(e)
	// Inbound first, so the outbound proxy's first upstream dial succeeds.
	for _, leg := range []chainLeg{legs[1], legs[0]} {
		cmd, err := c.command(e, leg)
		if err != nil {
			c.stop()
			return fmt.Errorf("%s %s: %w", c.kind, leg.side, err)
		}
		p, err := startProc(e.cfg.workDir, c.kind+"-"+leg.side, leg.pod, cmd)
		if err != nil {
			c.stop()
			return err
		}
		c.procs = append(c.procs, p)
		for _, port := range []int{leg.httpPort, leg.grpcPort} {
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			if err := waitDial(ctx, leg.pod, addr, 15*time.Second); err != nil {
				c.stop()
				return fmt.Errorf("%s %s: %w: %s", c.kind, leg.side, err, p.tail())
			}
		}
	}
	return nil
}

func (c *chain) stop() error {
	var errs []error
	for _, p := range c.procs {
		errs = append(errs, p.stop(10*time.Second))
	}
	c.procs = nil
	return errors.Join(errs...)
}

func (c *chain) traces() bool { return c.tracing }
