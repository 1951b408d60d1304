package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hoptrace/hoptrace/bench"
)

// setupInfo says what each setup is, in the order the tables list them.
var setupInfo = []struct{ name, what string }{
	{"direct", "no proxy: fortio client pod → fortio server pod over the node's bridge (the physical limit)"},
	{"hoptrace-100", "the agent binary, eBPF capture, `--sample-rate 1`: 4 spans per request exported over OTLP/gRPC to a local receiver"},
	{"hoptrace-0", "the agent binary, eBPF capture, `--sample-rate 0`: pure proxy and capture cost (headers still parsed and propagated)"},
	{"iptables", "the same `proxy` package (bench/cmd/iptproxy, sampling 0) behind iptables `REDIRECT` in both pods and `SO_ORIGINAL_DST`, the init-container way"},
	{"nginx", "two chained nginx reverse proxies (client pod → server pod → app), keep-alive upstreams, 1 worker each, no tracing"},
	{"caddy", "two chained Caddy reverse proxies with the `tracing` directive: 2 spans per request over OTLP/gRPC to the same receiver"},
}

var scenarioInfo = []struct{ name, what string }{
	{"http-1k", "HTTP/1.1 keep-alive, 1,000 req/s over 4 connections"},
	{"http-5k", "HTTP/1.1 keep-alive, 5,000 req/s over 16 connections"},
	{"http-max", "HTTP/1.1 keep-alive, as fast as possible, 16 connections"},
	{"http-close-1k", "one connection per request (`-keepalive=false`), 1,000 req/s, 4 at a time"},
	{"http-close-max", "one connection per request, as fast as possible, 16 at a time: new connections per second"},
	{"grpc-1k", "gRPC unary ping, 1,000 req/s over 4 connections"},
	{"grpc-max", "gRPC unary ping, as fast as possible, 16 connections"},
	{"http-conn1000", "HTTP/1.1 keep-alive, 2,000 req/s spread over 1,000 open connections (agent memory)"},
}

func render(rs []bench.Result, meta bench.Meta) string {
	var b strings.Builder
	idx := index(rs)
	fmt.Fprintf(&b, "Measured %s on a **shared 2-core VM**: other engineers' builds and tests ran on the same two cores during the run, so absolute numbers move between runs by tens of percent. Every setup ran in the same invocation, one after the other; read the ratios against **direct** of the same run.\n\n", meta.Date)
	fmt.Fprintf(&b, "- Machine: %s, %d cores, Linux %s; 1-minute load average (this benchmark included) when runs began: %s\n", meta.CPU, meta.Cores, meta.Kernel, loadRange(rs))
	fmt.Fprintf(&b, "- Versions: %s\n", versions(meta.Versions))
	fmt.Fprintf(&b, "- Command: `%s` (as root; whole matrix %s)\n", meta.Command, meta.Elapsed)
	b.WriteString("- Load: fortio `load` in the client pod (its cgroup and netns), fortio `server` in the server pod (HTTP echo on :8080, gRPC ping on :8079); runs of " + runLength(rs) + " each, after a short unrecorded warm-up per setup. Latency percentiles come from fortio's histogram at 1 µs resolution (buckets widen above 1 ms).\n")
	b.WriteString("- CPU is utime+stime of the setup's proxy processes (the agent; iptproxy; both nginx masters and workers; both Caddy processes) over the run, from `/proc/<pid>/stat`; RSS is their peak resident memory during the run (VmHWM, reset before each run), summed. The OTLP receiver, fortio and the kernel's softirq work are not charged to anyone.\n\n")
	for _, n := range meta.Notes {
		fmt.Fprintf(&b, "> **Run problem:** %s\n\n", n)
	}

	b.WriteString("### Setups\n\n| setup | what |\n|---|---|\n")
	for _, s := range setupInfo {
		fmt.Fprintf(&b, "| %s | %s |\n", s.name, s.what)
	}
	b.WriteString("\n### Targets\n\n")
	b.WriteString(targetsTable(idx))

	b.WriteString("\n### Results\n\n")
	b.WriteString("Latencies in µs. `+p50`/`+p99`: added to direct's percentile by the setup's two proxies (four legs, one hop). `CPU µs/req`: proxy CPU per request. `peak RSS MB`: VmHWM, with the anonymous part (heap, stacks) at the sampled peak in brackets; the rest is mapped files, mostly the binary itself. `threads`: most OS threads seen. `spans/req`: spans the receiver got per request (hoptrace records 4, Caddy 2; fewer means spans were dropped).\n")
	for _, sc := range scenarioInfo {
		rows := idx.scenario(sc.name)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n#### %s — %s\n\n", sc.name, sc.what)
		b.WriteString("| setup | req/s | × direct | p50 | p90 | p99 | p99.9 | +p50 | +p99 | errors | CPU s | CPU µs/req | peak RSS MB | threads | spans/req |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		base, hasBase := idx.get("direct", sc.name)
		for _, r := range rows {
			ratio, addP50, addP99 := "", "", ""
			if hasBase && base.RPS > 0 {
				ratio = fmt.Sprintf("%.2f", r.RPS/base.RPS)
				if r.Setup != "direct" {
					addP50 = fmt.Sprintf("%+.0f", r.P50us-base.P50us)
					addP99 = fmt.Sprintf("%+.0f", r.P99us-base.P99us)
				}
			}
			cpu, perReq, rss, threads, spansPerReq := "–", "–", "–", "–", "–"
			if r.Setup != "direct" {
				cpu = fmt.Sprintf("%.2f", r.CPUSeconds)
				if r.Requests > 0 {
					perReq = fmt.Sprintf("%.0f", r.CPUSeconds/float64(r.Requests)*1e6)
				}
				rss = fmt.Sprintf("%.1f (%.1f)", r.RSSMB, r.AnonMB)
				threads = fmt.Sprint(r.Threads)
			}
			if r.Spans > 0 && r.Requests > 0 {
				spansPerReq = fmt.Sprintf("%.2f", float64(r.Spans)/float64(r.Requests))
			}
			fmt.Fprintf(&b, "| %s | %.0f | %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %d | %s | %s | %s | %s | %s |\n",
				r.Setup, r.RPS, ratio, r.P50us, r.P90us, r.P99us, r.P999us, addP50, addP99, r.Errors, cpu, perReq, rss, threads, spansPerReq)
		}
	}
	b.WriteString("\nRaw numbers: `bench/results.json` (one object per run) and `bench/results.meta.json`.\n")
	return b.String()
}

// loadRange is the lowest and highest load average runs started at: 2.0 means
// both cores were already busy with something.
func loadRange(rs []bench.Result) string {
	if len(rs) == 0 {
		return "unknown"
	}
	lo, hi := rs[0].Load1, rs[0].Load1
	for _, r := range rs {
		lo, hi = min(lo, r.Load1), max(hi, r.Load1)
	}
	return fmt.Sprintf("%.1f to %.1f", lo, hi)
}

func versions(v map[string]string) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+" "+v[k])
	}
	return strings.Join(parts, ", ")
}

func runLength(rs []bench.Result) string {
	for _, r := range rs {
		if r.QPSTarget > 0 && r.DurationS > 0 {
			return fmt.Sprintf("%.0f s", r.DurationS)
		}
	}
	return "a few seconds"
}

// results indexes runs by setup and scenario.
type results struct {
	rs []bench.Result
	by map[[2]string]bench.Result
}

func index(rs []bench.Result) results {
	idx := results{rs: rs, by: map[[2]string]bench.Result{}}
	for _, r := range rs {
		idx.by[[2]string{r.Setup, r.Scenario}] = r
	}
	return idx
}

func (x results) get(setup, scenario string) (bench.Result, bool) {
	r, ok := x.by[[2]string{setup, scenario}]
	return r, ok
}

// scenario returns the runs of one scenario in setupInfo order.
func (x results) scenario(name string) []bench.Result {
	var out []bench.Result
	for _, s := range setupInfo {
		if r, ok := x.get(s.name, name); ok {
			out = append(out, r)
		}
	}
	return out
}
