package main

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/hoptrace/hoptrace/bench"
)

// A verdict on one target: what was compared and whether it holds.
//
// A target is decided on the medians over the rounds of its deciding numbers
// (conds). When the rounds fall on both sides of the threshold, the medians
// alone would call it on noise, so it is reported as not decided.
type verdict struct {
	target   string
	measured string
	missing  bool   // the runs it needs are not in the results
	conds    []cond // all must hold; empty: met decides
	met      bool   // for targets without conds
	// bySign decides by a sign test over the rounds instead of asking every
	// round to agree (the paired phase, which has rounds enough for it).
	bySign bool
}

// cond is one deciding number, measured once per round, and its threshold.
// The conds of a verdict have their values in the same rounds, in the same
// order.
type cond struct {
	vals []float64
	ok   func(float64) bool
}

// holds is whether every cond holds for the medians, and in how many of the
// rounds all of them held.
func (v verdict) holds() (median bool, rounds, of int) {
	median = true
	for _, c := range v.conds {
		median = median && c.ok(bench.Median(c.vals))
	}
	of = len(v.conds[0].vals)
	for i := range of {
		all := true
		for _, c := range v.conds {
			all = all && c.ok(c.vals[i])
		}
		if all {
			rounds++
		}
	}
	return median, rounds, of
}

func (v verdict) status() string {
	switch {
	case v.missing:
		return "not measured"
	case len(v.conds) == 0 && v.met:
		return "met"
	case len(v.conds) == 0:
		return "**not met**"
	}
	median, rounds, of := v.holds()
	if v.bySign {
		return signStatus(median, rounds, of)
	}
	switch {
	case median && rounds == of:
		return "met"
	case !median && rounds == 0:
		return "**not met**"
	}
	lean := "met"
	if !median {
		lean = "not met"
	}
	return fmt.Sprintf("not decided (median %s; met in %d of %d rounds)", lean, rounds, of)
}

// signLevel is how unlikely a verdict by the sign test must be by chance.
const signLevel = 0.05

// signStatus decides a target met in rounds of the rounds with a one-sided
// sign test: if the setups sat exactly at the target's threshold, each round
// would fall on either side of it with even odds, and a verdict needs a count
// that even odds reach at most signLevel of the time (10 of 12 rounds, 7 of
// 8, 6 of 6; never with 4 or fewer). A few rounds on the wrong side, which a
// busy machine always gives some, then do not leave every target undecided,
// and a median that one round tips is not taken for a verdict.
func signStatus(median bool, rounds, of int) string {
	pMet, pMissed := signTail(rounds, of), signTail(of-rounds, of)
	switch {
	case median && pMet <= signLevel:
		return fmt.Sprintf("met (in %d of %d rounds; sign test %s)", rounds, of, pValue(pMet))
	case !median && pMissed <= signLevel:
		return fmt.Sprintf("**not met** (met in %d of %d rounds; sign test %s)", rounds, of, pValue(pMissed))
	}
	lean, p := "met", pMet
	if !median {
		lean, p = "not met", pMissed
	}
	return fmt.Sprintf("not decided (median %s; met in %d of %d rounds; sign test %s)", lean, rounds, of, pValue(p))
}

func pValue(p float64) string {
	if p < 0.001 {
		return "p < 0.001"
	}
	return fmt.Sprintf("p = %.3f", p)
}

// signTail is the chance of at least k heads in n fair coin tosses.
func signTail(k, n int) float64 {
	if k <= 0 {
		return 1
	}
	p, c := 0.0, 1.0 // c is n choose i
	for i := 0; i <= n; i++ {
		if i >= k {
			p += c
		}
		c = c * float64(n-i) / float64(i+1)
	}
	return p / math.Pow(2, float64(n))
}

func targetsTable(x results) string {
	var vs []verdict
	vs = append(vs, latencyTargets(x)...)
	vs = append(vs, throughputTargets(x)...)
	vs = append(vs, tracingTargets(x)...)
	vs = append(vs, captureTarget(x))
	vs = append(vs, memoryTargets(x)...)
	vs = append(vs, errorTarget(x))
	vs = append(vs, crossNodeTarget(x))
	return verdictTable(vs)
}

// pairedTable renders the ratio and latency targets again from the paired
// phase of make bench: runs of only the setups a target compares, back to
// back in every round (xs holds one results per invocation), decided by the
// sign test. Targets a phase did not measure are left out rather than shown
// as missing. A phase that ran on fewer than the machine's cpus (every
// process pinned with taskset) says so in its rows: its readings are not the
// machine's, they are what is left without wake-ups across CPUs.
func pairedTable(xs []results, cpus int) string {
	var vs []verdict
	for _, x := range xs {
		for _, v := range slices.Concat(latencyTargets(x), throughputTargets(x), tracingTargets(x), []verdict{captureTarget(x)}) {
			if !v.missing {
				v.bySign = true
				if x.cpus > 0 && x.cpus < cpus {
					v.target += fmt.Sprintf(" — every process on %d of the %d CPUs", x.cpus, cpus)
				}
				vs = append(vs, v)
			}
		}
	}
	if len(vs) == 0 {
		return ""
	}
	return verdictTable(vs)
}

func verdictTable(vs []verdict) string {
	var b strings.Builder
	b.WriteString("| target | measured | verdict |\n|---|---|---|\n")
	for _, v := range vs {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", v.target, v.measured, v.status())
	}
	return b.String()
}

// spreadOf is " (lo–hi)" of values measured in more than one round, else "".
// signed writes "+lo to +hi" for differences.
func spreadOf(vals []float64, format string, signed bool) string {
	s := bench.SpreadOf(vals)
	if s.N < 2 {
		return ""
	}
	sep := "–"
	if signed {
		sep = " to "
	}
	return " (" + fmt.Sprintf(format, s.Min) + sep + fmt.Sprintf(format, s.Max) + ")"
}

// overRounds is " over N rounds" when there was more than one.
func overRounds(vals []float64) string {
	if len(vals) < 2 {
		return ""
	}
	return fmt.Sprintf(" over %d rounds", len(vals))
}

// ratioMeasured is "a vs b unit: 0.91× (0.85–1.10 over 3 rounds)", or with one
// round "a vs b unit (0.91×)".
func ratioMeasured(a, b float64, unit string, ratios []float64) string {
	m := bench.Median(ratios)
	if len(ratios) < 2 {
		return fmt.Sprintf("%.0f vs %.0f %s (%.2f×)", a, b, unit, m)
	}
	s := bench.SpreadOf(ratios)
	return fmt.Sprintf("%.0f vs %.0f %s: %.2f× (%.2f–%.2f over %d rounds)", a, b, unit, m, s.Min, s.Max, s.N)
}

// latencyTargets: added latency per hop (four legs) at 1,000 req/s, p50 <
// 150 µs and p99 < 1 ms over direct of the same round, and when nginx ran,
// p50 no more than nginx's two proxies add in the same round (issue 12).
func latencyTargets(x results) []verdict {
	var out []verdict
	p50 := func(a, b bench.Result) float64 { return a.P50us - b.P50us }
	for _, sc := range []string{"http-1k", "grpc-1k"} {
		dn := x.paired("nginx", "direct", sc, p50)
		for _, setup := range []string{"hoptrace-100", "hoptrace-0"} {
			d50 := x.paired(setup, "direct", sc, p50)
			d99 := x.paired(setup, "direct", sc, func(a, b bench.Result) float64 { return a.P99us - b.P99us })
			withNginx := len(dn) > 0 && len(dn) == len(d50)
			v := verdict{target: fmt.Sprintf("%s, %s: added p50 < 150 µs, p99 < 1 ms per hop", setup, sc)}
			if withNginx {
				v.target = fmt.Sprintf("%s, %s: added p50 < 150 µs and ≤ nginx's, p99 < 1 ms per hop", setup, sc)
			}
			base, ok1 := x.get("direct", sc)
			r, ok2 := x.get(setup, sc)
			if !ok1 || !ok2 || len(d50) == 0 {
				v.missing = true
				out = append(out, v)
				continue
			}
			v.measured = fmt.Sprintf("%+.0f µs p50%s, %+.0f µs p99%s%s (%.0f/%.0f vs direct %.0f/%.0f)",
				bench.Median(d50), spreadOf(d50, "%+.0f", true), bench.Median(d99), spreadOf(d99, "%+.0f", true), overRounds(d50),
				r.P50us, r.P99us, base.P50us, base.P99us)
			v.conds = []cond{
				{d50, func(d float64) bool { return d < 150 }},
				{d99, func(d float64) bool { return d < 1000 }},
			}
			if withNginx {
				over := make([]float64, len(d50))
				for i := range d50 {
					over[i] = d50[i] - dn[i]
				}
				v.measured += fmt.Sprintf("; nginx %+.0f µs p50", bench.Median(dn))
				v.conds = append(v.conds, cond{over, func(d float64) bool { return d <= 0 }})
			}
			out = append(out, v)
		}
	}
	return out
}

// throughputTargets, with 100% sampling (issue 12): HTTP/1 at least nginx's
// two-proxy chain in req/s and at most its CPU per request, gRPC at least 1.5
// times nginx's, both at least twice Caddy's.
func throughputTargets(x results) []verdict {
	var out []verdict
	for _, t := range []struct {
		scenario, peer string
		factor         float64
		cpu            bool // also CPU per request ≤ the peer's
	}{
		{"http-max", "nginx", 1, true}, {"http-max", "caddy", 2, false},
		{"grpc-max", "nginx", 1.5, false}, {"grpc-max", "caddy", 2, false},
	} {
		v := verdict{target: fmt.Sprintf("%s: hoptrace-100 ≥ %g× %s", t.scenario, t.factor, t.peer)}
		cpu := x.paired("hoptrace-100", t.peer, t.scenario, cpuRatio)
		if slices.Contains(cpu, 0) {
			cpu = nil // a run without CPU figures: decided on throughput alone
		}
		if t.cpu && len(cpu) > 0 {
			v.target += ", CPU/req ≤ " + t.peer + "'s"
		}
		h, ok1 := x.get("hoptrace-100", t.scenario)
		p, ok2 := x.get(t.peer, t.scenario)
		ratios := x.paired("hoptrace-100", t.peer, t.scenario, rpsRatio)
		if !ok1 || !ok2 || len(ratios) == 0 {
			v.missing = true
			out = append(out, v)
			continue
		}
		v.measured = ratioMeasured(h.RPS, p.RPS, "req/s", ratios)
		factor := t.factor
		v.conds = []cond{{ratios, func(r float64) bool { return r >= factor }}}
		if t.cpu && len(cpu) == len(ratios) {
			v.measured += fmt.Sprintf("; CPU/req %.2f× %s's%s", bench.Median(cpu), t.peer, spreadOf(cpu, "%.2f", false))
			v.conds = append(v.conds, cond{cpu, func(r float64) bool { return r <= 1 }})
		}
		out = append(out, v)
	}
	return out
}

// tracingBudget is what recording and exporting a hop's four spans may cost
// the agent per request, in µs of CPU (issue 12).
const tracingBudget = 8.0

// tracingTargets: the agent's CPU per request traced (hoptrace-100) minus
// untraced (hoptrace-0) in the same round, at a fixed rate (http-5k, both
// setups doing the same work per second) and at full load (http-max).
func tracingTargets(x results) []verdict {
	var out []verdict
	for _, scenario := range []string{"http-5k", "http-max"} {
		v := verdict{target: fmt.Sprintf("%s: tracing (hoptrace-100 minus hoptrace-0) ≤ %g µs of agent CPU per request for 4 spans", scenario, tracingBudget)}
		diffs := x.paired("hoptrace-100", "hoptrace-0", scenario, cpuDiffMicros)
		h, ok1 := x.get("hoptrace-100", scenario)
		u, ok2 := x.get("hoptrace-0", scenario)
		if !ok1 || !ok2 || len(diffs) == 0 || slices.Contains(diffs, noCPU) {
			v.missing = true
			out = append(out, v)
			continue
		}
		v.measured = fmt.Sprintf("%+.1f µs%s%s (%.1f vs %.1f µs/req)", bench.Median(diffs), spreadOf(diffs, "%+.1f", true), overRounds(diffs),
			h.CPUSeconds/float64(h.Requests)*1e6, u.CPUSeconds/float64(u.Requests)*1e6)
		v.conds = []cond{{diffs, func(d float64) bool { return d <= tracingBudget }}}
		out = append(out, v)
	}
	return out
}

// noCPU marks a pair of runs without CPU figures.
var noCPU = math.Inf(1)

// cpuDiffMicros is a's CPU per request minus b's, in µs; noCPU when either
// has none.
func cpuDiffMicros(a, b bench.Result) float64 {
	if a.Requests == 0 || b.Requests == 0 || a.CPUSeconds == 0 || b.CPUSeconds == 0 {
		return noCPU
	}
	return (a.CPUSeconds/float64(a.Requests) - b.CPUSeconds/float64(b.Requests)) * 1e6
}

// cpuRatio is a's CPU per request over b's; 0 when either has none.
func cpuRatio(a, b bench.Result) float64 {
	if a.Requests == 0 || b.Requests == 0 || b.CPUSeconds == 0 {
		return 0
	}
	return (a.CPUSeconds / float64(a.Requests)) / (b.CPUSeconds / float64(b.Requests))
}

// rpsRatio is a's throughput over b's; 0 when b has none.
func rpsRatio(a, b bench.Result) float64 {
	if b.RPS == 0 {
		return 0
	}
	return a.RPS / b.RPS
}

// captureFactor is how many more new connections per second eBPF capture must
// take than iptables capture, the proxy, its hand-off and its sampling being
// the same (issue 12).
const captureFactor = 1.2

// captureTarget compares the two captures at http-close-max.
func captureTarget(x results) verdict {
	v := verdict{target: fmt.Sprintf("http-close-max: eBPF capture (hoptrace-0) ≥ %g× iptables capture in new connections/s", captureFactor)}
	h, ok1 := x.get("hoptrace-0", "http-close-max")
	i, ok2 := x.get("iptables", "http-close-max")
	ratios := x.paired("hoptrace-0", "iptables", "http-close-max", rpsRatio)
	if !ok1 || !ok2 || len(ratios) == 0 {
		v.missing = true
		return v
	}
	v.measured = ratioMeasured(h.RPS, i.RPS, "conn/s", ratios)
	v.conds = []cond{{ratios, func(r float64) bool { return r >= captureFactor }}}
	return v
}

// memoryTargets: agent RSS under 50 MB with 1,000 concurrent connections.
func memoryTargets(x results) []verdict {
	var out []verdict
	for _, setup := range []string{"hoptrace-100", "hoptrace-0"} {
		v := verdict{target: fmt.Sprintf("%s: agent peak RSS < 50 MB with 1,000 connections", setup)}
		r, ok := x.get(setup, "http-conn1000")
		rss := x.each(setup, "http-conn1000", func(r bench.Result) float64 { return r.RSSMB })
		if !ok || len(rss) == 0 {
			v.missing = true
			out = append(out, v)
			continue
		}
		spread := ""
		if s := bench.SpreadOf(rss); s.N > 1 {
			spread = fmt.Sprintf("%.1f–%.1f over %d rounds; ", s.Min, s.Max, s.N)
		}
		v.measured = fmt.Sprintf("%.1f MB (%sanonymous %.1f MB, mapped files %.1f MB; %d threads)", r.RSSMB, spread, r.AnonMB, r.FileMB, r.Threads)
		v.conds = []cond{{rss, func(mb float64) bool { return mb < 50 }}}
		out = append(out, v)
	}
	return out
}

// errorTarget holds for every single run, not for the medians.
func errorTarget(x results) verdict {
	v := verdict{target: "zero errors in every run"}
	if len(x.runs) == 0 {
		v.missing = true
		return v
	}
	var bad []string
	for _, r := range x.runs {
		if r.Errors > 0 {
			where := fmt.Sprintf("%s/%s", r.Setup, r.Scenario)
			if x.rounds > 1 {
				where += fmt.Sprintf(" (round %d)", r.Round)
			}
			bad = append(bad, fmt.Sprintf("%s: %d", where, r.Errors))
		}
	}
	v.met = len(bad) == 0
	if v.met {
		v.measured = fmt.Sprintf("0 errors in %d runs", len(x.runs))
	} else {
		v.measured = strings.Join(bad, "; ")
	}
	return v
}

// crossNodeTarget: the cross-node setup (two agents) is measured beside the
// same-node one, in the same rounds.
func crossNodeTarget(x results) verdict {
	v := verdict{target: "cross-node (hoptrace-100-xnode) reported beside same-node (hoptrace-100)"}
	var both []string
	for _, sc := range scenarioOrder(x, bench.Meta{}) {
		if len(x.paired("hoptrace-100-xnode", "hoptrace-100", sc.Name, rpsRatio)) > 0 {
			both = append(both, sc.Name)
		}
	}
	if len(both) == 0 {
		v.missing = true
		return v
	}
	v.met = true
	v.measured = "in the same rounds: " + strings.Join(both, ", ") + " (see the comparison below)"
	return v
}
