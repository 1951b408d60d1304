package main

import (
	"fmt"
	"strings"
)

// A verdict on one target: what was compared and whether it holds.
type verdict struct {
	target   string
	measured string
	met      bool
	missing  bool // the runs it needs are not in the results
}

func (v verdict) status() string {
	switch {
	case v.missing:
		return "not measured"
	case v.met:
		return "met"
	}
	return "**not met**"
}

func targetsTable(x results) string {
	var vs []verdict
	vs = append(vs, latencyTargets(x)...)
	vs = append(vs, throughputTargets(x)...)
	vs = append(vs, captureTarget(x))
	vs = append(vs, memoryTargets(x)...)
	vs = append(vs, errorTarget(x))
	var b strings.Builder
	b.WriteString("| target | measured | verdict |\n|---|---|---|\n")
	for _, v := range vs {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", v.target, v.measured, v.status())
	}
	return b.String()
}

// latencyTargets: added latency per hop (four legs) at 1,000 req/s, p50 <
// 150 µs and p99 < 1 ms over direct, for the traced agent.
func latencyTargets(x results) []verdict {
	var out []verdict
	for _, sc := range []string{"http-1k", "grpc-1k"} {
		for _, setup := range []string{"hoptrace-100", "hoptrace-0"} {
			v := verdict{target: fmt.Sprintf("%s, %s: added p50 < 150 µs, p99 < 1 ms per hop", setup, sc)}
			base, ok1 := x.get("direct", sc)
			r, ok2 := x.get(setup, sc)
			if !ok1 || !ok2 {
				v.missing = true
				out = append(out, v)
				continue
			}
			d50, d99 := r.P50us-base.P50us, r.P99us-base.P99us
			v.measured = fmt.Sprintf("+%.0f µs p50, +%.0f µs p99 (%.0f/%.0f vs direct %.0f/%.0f)", d50, d99, r.P50us, r.P99us, base.P50us, base.P99us)
			v.met = d50 < 150 && d99 < 1000
			out = append(out, v)
		}
	}
	return out
}

// throughputTargets: with 100% sampling, at least nginx's two-proxy chain and
// at least twice Caddy's.
func throughputTargets(x results) []verdict {
	var out []verdict
	for _, sc := range []string{"http-max", "grpc-max"} {
		for _, peer := range []struct {
			name   string
			factor float64
		}{{"nginx", 1}, {"caddy", 2}} {
			v := verdict{target: fmt.Sprintf("%s: hoptrace-100 ≥ %g× %s", sc, peer.factor, peer.name)}
			h, ok1 := x.get("hoptrace-100", sc)
			p, ok2 := x.get(peer.name, sc)
			if !ok1 || !ok2 || p.RPS == 0 {
				v.missing = true
				out = append(out, v)
				continue
			}
			v.measured = fmt.Sprintf("%.0f vs %.0f req/s (%.2f×)", h.RPS, p.RPS, h.RPS/p.RPS)
			v.met = h.RPS >= peer.factor*p.RPS
			out = append(out, v)
		}
	}
	return out
}

// captureTarget: eBPF capture accepts at least as many new connections per
// second as iptables, the proxy and its sampling being the same.
func captureTarget(x results) verdict {
	v := verdict{target: "http-close-max: eBPF capture (hoptrace-0) ≥ iptables capture in new connections/s"}
	h, ok1 := x.get("hoptrace-0", "http-close-max")
	i, ok2 := x.get("iptables", "http-close-max")
	if !ok1 || !ok2 || i.RPS == 0 {
		v.missing = true
		return v
	}
	v.measured = fmt.Sprintf("%.0f vs %.0f conn/s (%.2f×)", h.RPS, i.RPS, h.RPS/i.RPS)
	v.met = h.RPS >= i.RPS
	return v
}

// memoryTargets: agent RSS under 50 MB with 1,000 concurrent connections.
func memoryTargets(x results) []verdict {
	var out []verdict
	for _, setup := range []string{"hoptrace-100", "hoptrace-0"} {
		v := verdict{target: fmt.Sprintf("%s: agent peak RSS < 50 MB with 1,000 connections", setup)}
		r, ok := x.get(setup, "http-conn1000")
		if !ok {
			v.missing = true
			out = append(out, v)
			continue
		}
		v.measured = fmt.Sprintf("%.1f MB (anonymous %.1f MB, mapped files %.1f MB; %d threads)", r.RSSMB, r.AnonMB, r.FileMB, r.Threads)
		v.met = r.RSSMB < 50
		out = append(out, v)
	}
	return out
}

func errorTarget(x results) verdict {
	v := verdict{target: "zero errors in every run"}
	if len(x.rs) == 0 {
		v.missing = true
		return v
	}
	var bad []string
	for _, r := range x.rs {
		if r.Errors > 0 {
			bad = append(bad, fmt.Sprintf("%s/%s: %d", r.Setup, r.Scenario, r.Errors))
		}
	}
	v.met = len(bad) == 0
	if v.met {
		v.measured = fmt.Sprintf("0 errors in %d runs", len(x.rs))
	} else {
		v.measured = strings.Join(bad, "; ")
	}
	return v
}
