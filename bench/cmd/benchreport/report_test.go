package main

import (
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/bench"
)

func TestSpliceKeepsTheRestOfTheDocument(t *testing.T) {
	doc, err := splice("", beginMarker+"\nold\n"+endMarker)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc, "# hoptrace benchmarks\n\n## Load benchmarks (make bench)\n\n"+beginMarker) {
		t.Fatalf("new document:\n%s", doc)
	}
	doc = "# Benchmarks\n\nintro\n\n## Load benchmarks (make bench)\n\n" + beginMarker + "\nold\n" + endMarker + "\n\nanalysis by hand\n\n## Spans\n"
	got, err := splice(doc, beginMarker+"\nnew\n"+endMarker)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(doc, "\nold\n", "\nnew\n", 1)
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, err := splice(beginMarker+" no end", "x"); err == nil {
		t.Error("a begin marker without an end marker must be an error")
	}
}

func TestTargets(t *testing.T) {
	rs := []bench.Result{
		{Setup: "direct", Scenario: "http-1k", P50us: 200, P99us: 500, RPS: 1000},
		{Setup: "hoptrace-100", Scenario: "http-1k", P50us: 340, P99us: 1400, RPS: 1000},
		{Setup: "hoptrace-0", Scenario: "http-1k", P50us: 380, P99us: 900, RPS: 1000},
		{Setup: "hoptrace-100", Scenario: "http-max", RPS: 9000},
		{Setup: "nginx", Scenario: "http-max", RPS: 10000},
		{Setup: "caddy", Scenario: "http-max", RPS: 4000},
		{Setup: "hoptrace-0", Scenario: "http-close-max", RPS: 3000},
		{Setup: "iptables", Scenario: "http-close-max", RPS: 2900, Errors: 1},
		{Setup: "hoptrace-0", Scenario: "http-conn1000", RSSMB: 49},
	}
	x := index(rs)
	got := map[string]string{}
	for _, v := range append(append(append(latencyTargets(x), throughputTargets(x)...), captureTarget(x), errorTarget(x)), memoryTargets(x)...) {
		got[v.target] = v.status()
	}
	want := map[string]string{
		"hoptrace-100, http-1k: added p50 < 150 µs, p99 < 1 ms per hop":                     "met",
		"hoptrace-0, http-1k: added p50 < 150 µs, p99 < 1 ms per hop":                       "**not met**",
		"hoptrace-100, grpc-1k: added p50 < 150 µs, p99 < 1 ms per hop":                     "not measured",
		"http-max: hoptrace-100 ≥ 1× nginx":                                                 "**not met**",
		"http-max: hoptrace-100 ≥ 2× caddy":                                                 "met",
		"http-close-max: eBPF capture (hoptrace-0) ≥ iptables capture in new connections/s": "met",
		"zero errors in every run":                                                          "**not met**",
		"hoptrace-0: agent peak RSS < 50 MB with 1,000 connections":                         "met",
		"hoptrace-100: agent peak RSS < 50 MB with 1,000 connections":                       "not measured",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
}
