package main

import (
	"slices"

	"github.com/hoptrace/hoptrace/bench"
)

// results indexes the medians and the runs of every round by setup and
// scenario.
type results struct {
	sums   []bench.Summary
	runs   []bench.Result
	rounds int // most rounds any cell has
	by     map[[2]string]bench.Summary
	byRun  map[[2]string]map[int]bench.Result // round → run
	// cpus is how many CPUs the runs had (the meta's cores: benchrun counts
	// those it may run on, so a run under taskset says so), 0 when unknown.
	cpus int
}

// index builds the index. Without runs (results.json from before rounds, one
// run per cell), each median is taken as the only run of round 1.
func index(sums []bench.Summary, runs []bench.Result) results {
	if runs == nil {
		for i, s := range sums {
			if s.Runs == 0 {
				s.Runs, s.RPSMin, s.RPSMax, s.P99MinUs, s.P99MaxUs = 1, s.RPS, s.RPS, s.P99us, s.P99us
				sums[i] = s
			}
			r := s.Result
			r.Round = 1
			runs = append(runs, r)
		}
	}
	x := results{sums: sums, runs: runs, by: map[[2]string]bench.Summary{}, byRun: map[[2]string]map[int]bench.Result{}}
	for _, s := range sums {
		x.by[[2]string{s.Setup, s.Scenario}] = s
		x.rounds = max(x.rounds, s.Runs)
	}
	for _, r := range runs {
		k := [2]string{r.Setup, r.Scenario}
		if x.byRun[k] == nil {
			x.byRun[k] = map[int]bench.Result{}
		}
		x.byRun[k][r.Round] = r
	}
	return x
}

func (x results) get(setup, scenario string) (bench.Summary, bool) {
	r, ok := x.by[[2]string{setup, scenario}]
	return r, ok
}

// scenario returns the medians of one scenario in setupInfo order.
func (x results) scenario(name string) []bench.Summary {
	var out []bench.Summary
	for _, s := range setupInfo {
		if r, ok := x.get(s.name, name); ok {
			out = append(out, r)
		}
	}
	// Setups the report does not describe (a profiling setup run with
	// -setups) come last rather than not at all.
	for _, r := range x.sums {
		known := slices.ContainsFunc(setupInfo, func(i struct{ name, what string }) bool { return i.name == r.Setup })
		if r.Scenario == name && !known {
			out = append(out, r)
		}
	}
	return out
}

// each is f of every round's run of setup in scenario, in round order.
func (x results) each(setup, scenario string, f func(bench.Result) float64) []float64 {
	rounds := x.byRun[[2]string{setup, scenario}]
	var out []float64
	for _, n := range sortedRounds(rounds) {
		out = append(out, f(rounds[n]))
	}
	return out
}

// paired is f of the runs of setups a and b in scenario from the same round,
// for every round that measured both, in round order: a comparison within a
// round, where the machine's load was about the same for both.
func (x results) paired(a, b, scenario string, f func(a, b bench.Result) float64) []float64 {
	ra, rb := x.byRun[[2]string{a, scenario}], x.byRun[[2]string{b, scenario}]
	var out []float64
	for _, n := range sortedRounds(ra) {
		if r, ok := rb[n]; ok {
			out = append(out, f(ra[n], r))
		}
	}
	return out
}

func sortedRounds(m map[int]bench.Result) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
