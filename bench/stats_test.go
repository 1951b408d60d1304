package bench

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1}, 10},
		{[]float64{-5, 5}, 0},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.xs)
		if got := Median(tt.xs); got != tt.want {
			t.Errorf("Median(%v) = %g, want %g", tt.xs, got, tt.want)
		}
		if !slices.Equal(in, tt.xs) {
			t.Errorf("Median reordered its argument: %v, was %v", tt.xs, in)
		}
	}
}

func TestSpreadOf(t *testing.T) {
	if got, want := SpreadOf([]float64{0.91, 1.10, 0.85}), (Spread{Median: 0.91, Min: 0.85, Max: 1.10, N: 3}); got != want {
		t.Errorf("SpreadOf = %+v, want %+v", got, want)
	}
	if got := SpreadOf(nil); got != (Spread{}) {
		t.Errorf("SpreadOf(nil) = %+v, want the zero Spread", got)
	}
}

func TestSummarize(t *testing.T) {
	runs := []Result{
		{Round: 1, Scenario: "http-1k", Setup: "direct", QPSTarget: 1000, Conns: 4, RPS: 1000, P50us: 150, P90us: 250, P99us: 1200, P999us: 5000, Requests: 10000, Threads: 0, Load1: 1},
		{Round: 1, Scenario: "http-1k", Setup: "iptables", QPSTarget: 1000, Conns: 4, RPS: 999, P50us: 400, P99us: 900, Errors: 3, CPUSeconds: 2.5, RSSMB: 22, Threads: 10, Load1: 1.5},
		{Round: 2, Scenario: "http-1k", Setup: "direct", QPSTarget: 1000, Conns: 4, RPS: 998, P50us: 160, P90us: 270, P99us: 1950, P999us: 6000, Requests: 9980, Load1: 3},
		{Round: 2, Scenario: "http-1k", Setup: "iptables", QPSTarget: 1000, Conns: 4, RPS: 1000, P50us: 500, P99us: 700, Errors: 0, CPUSeconds: 2.7, RSSMB: 23, Threads: 11, Load1: 2},
		{Round: 3, Scenario: "http-1k", Setup: "direct", QPSTarget: 1000, Conns: 4, RPS: 1001, P50us: 140, P90us: 260, P99us: 1500, P999us: 5500, Requests: 10010, Load1: 2},
		{Round: 3, Scenario: "http-1k", Setup: "iptables", QPSTarget: 1000, Conns: 4, RPS: 1000, P50us: 450, P99us: 800, Errors: 0, CPUSeconds: 2.6, RSSMB: 21, Threads: 12, Load1: 2.5},
		// A cell only one round measured (the others failed).
		{Round: 2, Scenario: "http-max", Setup: "direct", RPS: 30000, P99us: 4000},
	}
	got := Summarize(runs)
	if len(got) != 3 {
		t.Fatalf("%d summaries, want 3: %+v", len(got), got)
	}
	d, ipt, httpMax := got[0], got[1], got[2]
	if d.Setup != "direct" || ipt.Setup != "iptables" || httpMax.Scenario != "http-max" {
		t.Fatalf("order: %s/%s, %s/%s, %s/%s", d.Scenario, d.Setup, ipt.Scenario, ipt.Setup, httpMax.Scenario, httpMax.Setup)
	}
	wantD := Summary{
		Result: Result{Scenario: "http-1k", Setup: "direct", QPSTarget: 1000, Conns: 4, RPS: 1000,
			P50us: 150, P90us: 260, P99us: 1500, P999us: 5500, Requests: 10000, Load1: 2},
		Runs: 3, RPSMin: 998, RPSMax: 1001, P99MinUs: 1200, P99MaxUs: 1950,
	}
	if d != wantD {
		t.Errorf("direct:\n got %+v\nwant %+v", d, wantD)
	}
	// Per-field medians: errors 0 (one round had 3), CPU 2.6, RSS 22, threads 11.
	if ipt.Errors != 0 || ipt.CPUSeconds != 2.6 || ipt.RSSMB != 22 || ipt.Threads != 11 || ipt.P50us != 450 || ipt.P99us != 800 {
		t.Errorf("iptables medians: %+v", ipt)
	}
	if httpMax.Runs != 1 || httpMax.RPSMin != 30000 || httpMax.RPSMax != 30000 || httpMax.P99MinUs != 4000 || httpMax.P99MaxUs != 4000 {
		t.Errorf("single round: %+v", httpMax)
	}
	// Two rounds: the median is the mean of both, rounded for counts.
	two := Summarize([]Result{{Setup: "s", Errors: 0, Threads: 10}, {Setup: "s", Errors: 1, Threads: 13}})[0]
	if two.Errors != 1 || two.Threads != 12 {
		t.Errorf("two rounds: errors %d threads %d, want 1 and 12", two.Errors, two.Threads)
	}
}

// results.json keeps the fields the issue asks for, flat, plus the spread; a
// summary carries no round, a run does.
func TestSummaryJSON(t *testing.T) {
	s := Summarize([]Result{{Round: 1, Scenario: "http-1k", Setup: "direct", RPS: 1}, {Round: 2, Scenario: "http-1k", Setup: "direct", RPS: 3}})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(b, &objs); err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("%d objects", len(objs))
	}
	for _, k := range []string{"scenario", "setup", "qps_target", "rps", "p50_us", "p90_us", "p99_us", "p999_us",
		"errors", "cpu_s", "rss_mb", "runs", "rps_min", "rps_max", "p99_min_us", "p99_max_us"} {
		if _, ok := objs[0][k]; !ok {
			t.Errorf("results.json object has no %q: %s", k, b)
		}
	}
	if _, ok := objs[0]["round"]; ok {
		t.Errorf("a summary has a round: %s", b)
	}
	if objs[0]["rps"] != 2.0 || objs[0]["runs"] != 2.0 {
		t.Errorf("rps %v runs %v, want 2 and 2", objs[0]["rps"], objs[0]["runs"])
	}
	b, _ = json.Marshal(Result{Round: 2})
	var run map[string]any
	json.Unmarshal(b, &run)
	if run["round"] != 2.0 {
		t.Errorf("a run has no round: %s", b)
	}
}
