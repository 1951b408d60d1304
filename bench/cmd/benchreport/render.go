package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hoptrace/hoptrace/bench"
)

// setupInfo says what each setup is, in the order the tables list them.
var setupInfo = []struct{ name, what string }{
	{"direct", "no proxy: fortio client pod → fortio server pod over the node's bridge (the physical limit)"},
	{"hoptrace-100", "the agent binary, eBPF capture, `--sample-rate 1`: 4 spans per request exported over OTLP/gRPC to a local receiver"},
	{"hoptrace-0", "the agent binary, eBPF capture, `--sample-rate 0`: pure proxy and capture cost (headers still parsed and propagated)"},
	{"hoptrace-100-tcphop", "as hoptrace-100 with `--local-handoff=false`: the hop between the agent's two proxies goes through TCP over the veths and the bridge, as before the local hand-off (docs/proxy.md); a subset of the scenarios"},
	{"hoptrace-100-allcores", "as hoptrace-100 with `--cores` fixed at every CPU of the machine, as the agent ran before `--cores auto` (docs/agent.md); a subset of the scenarios"},
	{"hoptrace-100-fastpath", "as hoptrace-100 with `--fast-path`: the apps' sends on the in-pod loopback legs go straight to the agent's sockets with sk_msg (docs/redirect.md); a subset of the scenarios"},
	{"hoptrace-100-xnode", "as hoptrace-100, cross-node: two agents as on two nodes (own pin dir, pods file, admin socket), node A's capturing the client pod, node B's the server pod, each with `--mesh-networks` naming the pod subnets; CPU and RSS are both agents' summed; a subset of the scenarios"},
	{"hoptrace-100-svc", "as hoptrace-100, fortio calling a Service's virtual IP that a DNAT in the client pod sends to the server pod (kube-proxy's part): the agent's two proxies see different four-tuples and pair by connection identity (docs/proxy.md); connection tracking on in the client pod; a subset of the scenarios"},
	{"iptables", "the same `proxy` package (bench/cmd/iptproxy, sampling 0) behind iptables `REDIRECT` in both pods and `SO_ORIGINAL_DST`, the init-container way of capture, with the same local hand-off as the agent, so that the two differ in capture only"},
	{"nginx", "two chained nginx reverse proxies (client pod → server pod → app), keep-alive upstreams, 1 worker each, no tracing"},
	{"caddy", "two chained Caddy reverse proxies with the `tracing` directive: 2 spans per request over OTLP/gRPC to the same receiver"},
}

// scenarioOrder lists the scenarios to render: as the meta describes them
// (benchrun's matrix, in order), then any other scenario the results hold,
// named only, so that no measured cell is left out of the report.
func scenarioOrder(x results, meta bench.Meta) []bench.ScenarioInfo {
	out := slices.Clone(meta.Scenarios)
	for _, s := range x.sums {
		if !slices.ContainsFunc(out, func(i bench.ScenarioInfo) bool { return i.Name == s.Scenario }) {
			out = append(out, bench.ScenarioInfo{Name: s.Scenario, What: s.Scenario})
		}
	}
	return out
}

// render is the generated block: the matrix x with its meta, and the
// results of the paired phase, if it ran.
func render(x results, meta bench.Meta, paired []results) string {
	var b strings.Builder
	multi := x.rounds > 1
	fmt.Fprintf(&b, "Measured %s on a **shared 2-core VM**: other engineers' builds and tests ran on the same two cores during the run, so absolute numbers move between runs by tens of percent. ", meta.Date)
	if multi {
		fmt.Fprintf(&b, "The whole matrix ran %d times (rounds), in one invocation: each round ran every setup once, always in the same order (iptables last), on fresh pods, so slow changes of the machine's load fall on every setup alike. Every number is the median over the rounds, each field on its own; ratios and differences against **direct**, and the comparisons the targets make, are taken within a round and their median given, with the lowest and highest round in brackets.\n\n", x.rounds)
	} else {
		b.WriteString("Every setup ran in the same invocation, one after the other; read the ratios against **direct** of the same run.\n\n")
	}
	fmt.Fprintf(&b, "- Machine: %s, %d cores, Linux %s; %s\n", meta.CPU, meta.Cores, meta.Kernel, loadAverages(x.runs, meta.Rounds))
	fmt.Fprintf(&b, "- Versions: %s\n", versions(meta.Versions))
	if multi {
		fmt.Fprintf(&b, "- Command: `%s` (as root; %d rounds in %s)\n", meta.Command, x.rounds, meta.Elapsed)
	} else {
		fmt.Fprintf(&b, "- Command: `%s` (as root; whole matrix %s)\n", meta.Command, meta.Elapsed)
	}
	warmup := "per setup"
	if multi {
		warmup = "per setup and round"
	}
	b.WriteString("- Load: fortio `load` in the client pod (its cgroup and netns), fortio `server` in the server pod (HTTP echo on :8080, gRPC ping on :8079); runs of " + runLength(x.runs, meta) + " each, after a short unrecorded warm-up " + warmup + ". Latency percentiles come from fortio's histogram at 1 µs resolution (buckets widen above 1 ms).\n")
	b.WriteString("- CPU is utime+stime of the setup's proxy processes (the agent; iptproxy; both nginx masters and workers; both Caddy processes) over the run, from `/proc/<pid>/stat`; RSS is their peak resident memory during the run (VmHWM, reset before each run), summed. The OTLP receiver, fortio and the kernel's softirq work are not charged to anyone.\n")
	if ct := conntrackLine(meta.Rounds); ct != "" {
		b.WriteString("- " + ct + "\n")
	}
	b.WriteString("\n")
	for _, n := range meta.Notes {
		fmt.Fprintf(&b, "> **Run problem:** %s\n\n", n)
	}

	b.WriteString("### Setups\n\n| setup | what |\n|---|---|\n")
	for _, s := range setupInfo {
		fmt.Fprintf(&b, "| %s | %s |\n", s.name, s.what)
	}
	b.WriteString("\n### Targets\n\n")
	if multi {
		b.WriteString("Each verdict is taken on the median over the rounds of the numbers it compares; when some rounds meet the target and others do not, it says *not decided*.\n\n")
	}
	b.WriteString(targetsTable(x))
	if t := pairedTable(paired, meta.Cores); t != "" {
		b.WriteString("\n#### Paired readings\n\n" +
			"In the matrix the setups a target compares run minutes apart in a round, each through every scenario, and the machine's load (others' work on the two cores) can fall on one and not the other; the matrix's few rounds cannot tell a small margin from that noise. So `make bench` then runs each target's setups alone, back to back in every round on fresh pods (`benchrun -setups <the compared setups> -scenarios <its scenarios>`), in more rounds (the count is in each row). " +
			"These verdicts are taken by a one-sided sign test over the rounds: were the setups exactly at the target's threshold, each round would fall on either side of it with even odds, so a target is *met* when so many rounds meet it (and the median does) that even odds would give as many at most 5 % of the time (p ≤ 0.05: 10 rounds of 12, 7 of 8), *not met* when as many miss it, and otherwise *not decided*.")
		if slices.ContainsFunc(paired, func(x results) bool { return x.cpus > 0 && x.cpus < meta.Cores }) {
			b.WriteString(" Rows that end *every process on N of the M CPUs* come from a phase run under `taskset` (client, apps, proxies and receiver all on those CPUs): no wake-up crosses from one CPU to another there, so they show what the proxies add without that cost. They are a reading beside the machine's, not instead of it.")
		}
		b.WriteString("\n\n")
		b.WriteString(t)
	}

	b.WriteString(variantsSection(x))
	b.WriteString("\n### Results\n\n")
	b.WriteString("Latencies in µs. ")
	if multi {
		b.WriteString("Medians over the rounds; for req/s and p99 the lowest and highest round in brackets. `× direct`, `+p50`, `+p99`, `CPU µs/req` and `spans/req` are computed per round (against direct of the same round) and their median shown. ")
	}
	b.WriteString("`+p50`/`+p99`: added to direct's percentile by the setup's two proxies (four legs, one hop). `CPU µs/req`: proxy CPU per request. `peak RSS MB`: VmHWM, with the anonymous part (heap, stacks) at the sampled peak in brackets; the rest is mapped files, mostly the binary itself. `threads`: most OS threads seen. `spans/req`: spans the receiver got per request (hoptrace records 4, Caddy 2; fewer means spans were dropped). `receiver CPU µs/req`: what the OTLP receiver (bench/cmd/otlpsink, which counts spans without decoding them) spent per request on the same cores, charged to no setup.\n")
	for _, sc := range scenarioOrder(x, meta) {
		rows := x.scenario(sc.Name)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n#### %s — %s\n\n", sc.Name, sc.What)
		b.WriteString("| setup | req/s | × direct | p50 | p90 | p99 | p99.9 | +p50 | +p99 | errors | CPU s | CPU µs/req | peak RSS MB | threads | spans/req | receiver CPU µs/req |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rows {
			ratio, addP50, addP99 := "", "", ""
			if ratios := x.paired(r.Setup, "direct", sc.Name, rpsRatio); len(ratios) > 0 {
				ratio = fmt.Sprintf("%.2f", bench.Median(ratios))
				if r.Setup != "direct" {
					addP50 = fmt.Sprintf("%+.0f", bench.Median(x.paired(r.Setup, "direct", sc.Name, func(a, b bench.Result) float64 { return a.P50us - b.P50us })))
					addP99 = fmt.Sprintf("%+.0f", bench.Median(x.paired(r.Setup, "direct", sc.Name, func(a, b bench.Result) float64 { return a.P99us - b.P99us })))
				}
			}
			cpu, perReq, rss, threads, spansPerReq, rxPerReq := "–", "–", "–", "–", "–", "–"
			if r.Setup != "direct" {
				cpu = fmt.Sprintf("%.2f", r.CPUSeconds)
				if v := x.each(r.Setup, sc.Name, perRequest(func(r bench.Result) float64 { return r.CPUSeconds * 1e6 })); len(v) > 0 {
					perReq = fmt.Sprintf("%.0f", bench.Median(v))
				}
				rss = fmt.Sprintf("%.1f (%.1f)", r.RSSMB, r.AnonMB)
				threads = fmt.Sprint(r.Threads)
			}
			if r.Spans > 0 {
				if v := x.each(r.Setup, sc.Name, perRequest(func(r bench.Result) float64 { return float64(r.Spans) })); len(v) > 0 {
					spansPerReq = fmt.Sprintf("%.2f", bench.Median(v))
				}
				if v := x.each(r.Setup, sc.Name, perRequest(func(r bench.Result) float64 { return r.ReceiverCPUSeconds * 1e6 })); len(v) > 0 {
					rxPerReq = fmt.Sprintf("%.0f", bench.Median(v))
				}
			}
			rps, p99 := fmt.Sprintf("%.0f", r.RPS), fmt.Sprintf("%.0f", r.P99us)
			if r.Runs > 1 {
				rps += fmt.Sprintf(" (%.0f–%.0f)", r.RPSMin, r.RPSMax)
				p99 += fmt.Sprintf(" (%.0f–%.0f)", r.P99MinUs, r.P99MaxUs)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.0f | %s | %.0f | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n",
				r.Setup, rps, ratio, r.P50us, r.P90us, p99, r.P999us, addP50, addP99, r.Errors, cpu, perReq, rss, threads, spansPerReq, rxPerReq)
		}
	}
	if multi {
		b.WriteString("\nRaw numbers: `bench/results.json` (the medians, one object per setup and scenario), `bench/results.runs.json` (every run, with its round) and `bench/results.meta.json` (machine, versions, and the load average and conntrack check of each round)")
		if len(paired) > 0 {
			b.WriteString("; the paired phase's beside them, `bench/results.paired-<scenario>.json` and its `.runs.json` and `.meta.json`")
		}
		b.WriteString(".\n")
	} else {
		b.WriteString("\nRaw numbers: `bench/results.json` (one object per run) and `bench/results.meta.json`.\n")
	}
	return b.String()
}

// perRequest divides f by the run's requests; runs without requests are
// skipped (NaN is filtered by the caller's Median of what remains).
func perRequest(f func(bench.Result) float64) func(bench.Result) float64 {
	return func(r bench.Result) float64 {
		if r.Requests == 0 {
			return 0
		}
		return f(r) / float64(r.Requests)
	}
}

// loadAverages says how busy the machine was: per round when the round began
// and the range over its runs' starts, else the range over all runs. 2.0
// means both cores were already busy with something.
func loadAverages(runs []bench.Result, rounds []bench.Round) string {
	if len(rounds) > 1 {
		parts := make([]string, 0, len(rounds))
		for _, r := range rounds {
			parts = append(parts, fmt.Sprintf("round %d: %.1f (%.1f–%.1f)", r.Round, r.Load1, r.Load1Min, r.Load1Max))
		}
		return "1-minute load average (this benchmark included) when each round began, and in brackets the range over the starts of its runs: " + strings.Join(parts, ", ")
	}
	return "1-minute load average (this benchmark included) when runs began: " + loadRange(runs)
}

// loadRange is the lowest and highest load average runs started at.
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

// conntrackLine reports the check that connection tracking was off in the
// pods for every setup but iptables: the entries after each warm-up.
func conntrackLine(rounds []bench.Round) string {
	var off []string
	lo, hi, nat := -1, -1, false
	bad := false
	for _, r := range rounds {
		for setup, n := range r.Conntrack {
			if setup == "iptables" || strings.HasPrefix(setup, "iptables-") {
				if !nat || n < lo {
					lo = n
				}
				hi = max(hi, n)
				nat = true
				continue
			}
			if n > 0 {
				bad = true
			}
			if !slices.Contains(off, setup) {
				off = append(off, setup)
			}
		}
	}
	if len(off) == 0 || bad {
		return "" // a problem is reported as a run problem
	}
	s := "Connection tracking in the pods, checked after every warm-up: 0 entries for every setup but iptables"
	switch {
	case nat && lo == hi:
		s += fmt.Sprintf(" (%d, from its REDIRECT rules)", lo)
	case nat:
		s += fmt.Sprintf(" (%d to %d, from its REDIRECT rules)", lo, hi)
	}
	return s + "."
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

func runLength(rs []bench.Result, meta bench.Meta) string {
	if meta.RunSeconds > 0 {
		return fmt.Sprintf("%g s", meta.RunSeconds)
	}
	for _, r := range rs {
		if r.QPSTarget > 0 && r.DurationS > 0 {
			return fmt.Sprintf("%.0f s", r.DurationS)
		}
	}
	return "a few seconds"
}

// variants are the setups compared with hoptrace-100 of the same round, in
// the order the comparison lists them.
var variants = []struct{ setup, what string }{
	{"hoptrace-100-xnode", "cross-node (two agents) vs same-node"},
	{"hoptrace-100-tcphop", "local hand-off off (TCP between the proxies) vs on"},
	{"hoptrace-100-allcores", "every CPU all the time (`--cores` at the CPU count) vs `--cores auto`"},
	{"hoptrace-100-fastpath", "sk_msg fast path on vs off"},
	{"hoptrace-100-svc", "through a Service's virtual IP vs the pod's address"},
}

// variantsSection compares each variant with hoptrace-100 within each round:
// throughput ratio, added latency and CPU per request.
func variantsSection(x results) string {
	var b strings.Builder
	const base = "hoptrace-100"
	for _, v := range variants {
		var rows []string
		for _, sc := range scenarioOrder(x, bench.Meta{}) {
			if _, ok := x.get(v.setup, sc.Name); !ok {
				continue
			}
			ratios := x.paired(v.setup, base, sc.Name, rpsRatio)
			if len(ratios) == 0 {
				continue
			}
			d50 := x.paired(v.setup, base, sc.Name, func(a, b bench.Result) float64 { return a.P50us - b.P50us })
			d99 := x.paired(v.setup, base, sc.Name, func(a, b bench.Result) float64 { return a.P99us - b.P99us })
			cpuA := x.each(v.setup, sc.Name, perRequest(func(r bench.Result) float64 { return r.CPUSeconds * 1e6 }))
			cpuB := x.each(base, sc.Name, perRequest(func(r bench.Result) float64 { return r.CPUSeconds * 1e6 }))
			cpuRatio := x.paired(v.setup, base, sc.Name, cpuRatio)
			rows = append(rows, fmt.Sprintf("| %s | %.2f×%s | %+.0f%s | %+.0f%s | %.0f vs %.0f (%.2f×%s) |",
				sc.Name, bench.Median(ratios), spreadOf(ratios, "%.2f", false),
				bench.Median(d50), spreadOf(d50, "%+.0f", true), bench.Median(d99), spreadOf(d99, "%+.0f", true),
				bench.Median(cpuA), bench.Median(cpuB), bench.Median(cpuRatio), spreadOf(cpuRatio, "%.2f", false)))
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n### %s: %s\n\n", v.setup, v.what)
		b.WriteString("Each number compares the two setups within a round (same pods, same minute), median over the rounds, lowest and highest round in brackets.\n\n")
		fmt.Fprintf(&b, "| scenario | req/s × %s | p50 µs vs %s | p99 µs vs %s | CPU µs/req, this vs %s |\n|---|---:|---:|---:|---:|\n", base, base, base, base)
		b.WriteString(strings.Join(rows, "\n") + "\n")
	}
	return b.String()
}
