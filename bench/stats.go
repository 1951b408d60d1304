package bench

import (
	"math"
	"slices"
)

// Median is the middle value of xs, or the mean of the two middle values when
// there is an even number of them; 0 for none. xs is not modified.
func Median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Spread is a value measured once per round: its median, lowest and highest.
type Spread struct {
	Median, Min, Max float64
	N                int // rounds
}

// SpreadOf summarizes one value per round.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	return Spread{Median: Median(xs), Min: slices.Min(xs), Max: slices.Max(xs), N: len(xs)}
}

// Summarize turns the runs of every round into one Summary per (scenario,
// setup), in the order each pair first appears in runs: per-field medians,
// the number of rounds, and the spread of req/s and p99.
func Summarize(runs []Result) []Summary {
	type key struct{ scenario, setup string }
	var order []key
	groups := map[key][]Result{}
	for _, r := range runs {
		k := key{r.Scenario, r.Setup}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Summary, 0, len(order))
	for _, k := range order {
		out = append(out, summarize(groups[k]))
	}
	return out
}

func summarize(rs []Result) Summary {
	f := func(field func(Result) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = field(r)
		}
		return Median(xs)
	}
	i := func(field func(Result) int64) int64 {
		return int64(math.Round(f(func(r Result) float64 { return float64(field(r)) })))
	}
	m := Result{
		Scenario:           rs[0].Scenario,
		Setup:              rs[0].Setup,
		QPSTarget:          rs[0].QPSTarget,
		Conns:              rs[0].Conns,
		RPS:                f(func(r Result) float64 { return r.RPS }),
		P50us:              f(func(r Result) float64 { return r.P50us }),
		P90us:              f(func(r Result) float64 { return r.P90us }),
		P99us:              f(func(r Result) float64 { return r.P99us }),
		P999us:             f(func(r Result) float64 { return r.P999us }),
		Requests:           i(func(r Result) int64 { return r.Requests }),
		Errors:             i(func(r Result) int64 { return r.Errors }),
		CPUSeconds:         f(func(r Result) float64 { return r.CPUSeconds }),
		RSSMB:              f(func(r Result) float64 { return r.RSSMB }),
		AnonMB:             f(func(r Result) float64 { return r.AnonMB }),
		FileMB:             f(func(r Result) float64 { return r.FileMB }),
		Threads:            int(i(func(r Result) int64 { return int64(r.Threads) })),
		Spans:              i(func(r Result) int64 { return r.Spans }),
		ReceiverCPUSeconds: f(func(r Result) float64 { return r.ReceiverCPUSeconds }),
		DurationS:          f(func(r Result) float64 { return r.DurationS }),
		Load1:              f(func(r Result) float64 { return r.Load1 }),
	}
	s := Summary{Result: m, Runs: len(rs)}
	s.RPSMin, s.RPSMax = rs[0].RPS, rs[0].RPS
	s.P99MinUs, s.P99MaxUs = rs[0].P99us, rs[0].P99us
	for _, r := range rs[1:] {
		s.RPSMin, s.RPSMax = min(s.RPSMin, r.RPS), max(s.RPSMax, r.RPS)
		s.P99MinUs, s.P99MaxUs = min(s.P99MinUs, r.P99us), max(s.P99MaxUs, r.P99us)
	}
	return s
}
