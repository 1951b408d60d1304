package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hoptrace/hoptrace/bench"
)

// verifier is a setup that can tell whether traffic really went through it.
type verifier interface {
	verify(ctx context.Context, e *env) error
}

// tracer is a setup that exports spans, which the warm-up must have produced.
type tracer interface {
	traces() bool
}

// subsetSetup is a setup that runs only some of the matrix's scenarios.
type subsetSetup interface {
	runsScenario(name string) bool
}

// natSetup is a setup that may need connection tracking in the pods
// (iptables REDIRECT, a Service's DNAT): the only ones allowed to have it on.
type natSetup interface {
	usesNAT() bool
}

// warmupDuration is the length of each warm-up run.
const warmupDuration = 2 * time.Second

// Warm-ups run before a setup's measured runs and are not recorded: they open
// the proxies' upstream connections and let the Go runtimes size their heaps.
var warmups = []scenario{
	{name: "warmup-http", keepalive: true, conns: 16},
	{name: "warmup-grpc", grpc: true, conns: 4},
}

// runSetup starts st, warms it up, checks it captures, runs every scenario that
// applies to it and stops it. conntrack is the number of conntrack entries in
// the pods after the warm-up (-1: not read).
func runSetup(ctx context.Context, e *env, st setup, scns []scenario) (results []bench.Result, conntrack int, err error) {
	log.Printf("== %s (round %d of %d)", st.name(), e.round, e.cfg.rounds)
	conntrack = -1
	t0 := time.Now()
	var tStarted, tWarm, tRuns time.Time
	if err := st.start(ctx, e); err != nil {
		return nil, conntrack, fmt.Errorf("start: %w", err)
	}
	tStarted = time.Now()
	defer func() {
		if serr := st.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("stop: %w", serr))
		}
		if err == nil {
			done := time.Now()
			log.Printf("   %s in %s: start %s, warm-up %s, runs %s, stop %s", st.name(), done.Sub(t0).Round(100*time.Millisecond),
				tStarted.Sub(t0).Round(100*time.Millisecond), tWarm.Sub(tStarted).Round(100*time.Millisecond),
				tRuns.Sub(tWarm).Round(100*time.Millisecond), done.Sub(tRuns).Round(100*time.Millisecond))
		}
	}()
	spans0, err := e.spans(ctx)
	if err != nil {
		return nil, conntrack, err
	}
	for _, w := range warmups {
		// Not recorded: no settling needed (awaitSpans waits for the spans).
		r, err := measure(ctx, e, st, w, warmupDuration, 0)
		if err != nil {
			return nil, conntrack, fmt.Errorf("warm-up: %w", err)
		}
		if r.Errors > 0 {
			log.Printf("   %s: %d errors in %d requests", w.name, r.Errors, r.Requests)
		}
	}
	if v, ok := st.(verifier); ok {
		if err := v.verify(ctx, e); err != nil {
			return nil, conntrack, err
		}
	}
	if t, ok := st.(tracer); ok && t.traces() {
		if err := awaitSpans(ctx, e, spans0, 10*time.Second); err != nil {
			return nil, conntrack, err
		}
	}
	// The warm-up opened connections: were they tracked?
	if conntrack, err = e.conntrackEntries(); err != nil {
		return nil, -1, err
	}
	log.Printf("   conntrack entries in the pods after the warm-up: %d", conntrack)
	tWarm = time.Now()
	for _, sc := range scns {
		// Scenarios named on the command line run on every setup.
		if len(e.cfg.scenarios) == 0 && !sc.runsOn(st.name()) {
			continue
		}
		if sub, ok := st.(subsetSetup); ok && len(e.cfg.scenarios) == 0 && !sub.runsScenario(sc.name) {
			continue
		}
		r, err := measure(ctx, e, st, sc, e.cfg.duration, settleTime(e, st))
		if err != nil {
			return results, conntrack, fmt.Errorf("%s: %w", sc.name, err)
		}
		log.Printf("   %-15s %8.0f rps  p50 %6.0fµs  p90 %6.0fµs  p99 %7.0fµs  p99.9 %7.0fµs  err %d  cpu %5.2fs  rss %5.1fMB (anon %.1f)  threads %d  spans %d",
			sc.name, r.RPS, r.P50us, r.P90us, r.P99us, r.P999us, r.Errors, r.CPUSeconds, r.RSSMB, r.AnonMB, r.Threads, r.Spans)
		results = append(results, r)
	}
	tRuns = time.Now()
	return results, conntrack, nil
}

// drainTime is how long a setup that exports nothing gets after a run to
// finish its work (closing connections) before its CPU is read.
const drainTime = 200 * time.Millisecond

// settleTime is the pause between the end of a run and reading its CPU and
// span counts: -settle for a setup that exports spans in batches, drainTime for
// other proxies, nothing for direct (no process to read).
func settleTime(e *env, st setup) time.Duration {
	switch t, ok := st.(tracer); {
	case ok && t.traces():
		return e.cfg.settle
	case len(st.pids()) > 0:
		return min(drainTime, e.cfg.settle)
	}
	return 0
}

// measure runs one fortio load of length d in the client pod and what the
// setup's processes spent on it, read settle after the load ended.
func measure(ctx context.Context, e *env, st setup, sc scenario, d, settle time.Duration) (bench.Result, error) {
	r := bench.Result{Scenario: sc.name, Setup: st.name(), QPSTarget: sc.qps, Conns: sc.conns}
	r.Load1, _ = bench.LoadAvg1()
	pids := st.pids()
	for _, pid := range pids {
		if err := bench.ResetPeakRSS(pid); err != nil {
			return r, err
		}
	}
	cpu0, err := cpuSum(pids)
	if err != nil {
		return r, err
	}
	rx0, err := cpuSum([]int{e.sink.pid()})
	if err != nil {
		return r, err
	}
	spans0, err := e.spans(ctx)
	if err != nil {
		return r, err
	}
	out := filepath.Join(e.cfg.workDir, st.name()+"-"+sc.name+".json")
	os.Remove(out)
	// Generous: fortio opens every connection before it starts the clock.
	runCtx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(runCtx, e.cfg.fortio, sc.fortioArgs(st.target(e, sc), out, d.Seconds())...)
	p, err := startProc(e.cfg.workDir, "fortio-"+st.name()+"-"+sc.name, e.client, cmd)
	if err != nil {
		return r, err
	}
	peak := sampleStatus(pids, p.exited)
	<-p.exited
	s := <-peak
	r.AnonMB, r.FileMB, r.Threads = s.AnonMB, s.FileMB, s.Threads
	if p.err != nil {
		return r, fmt.Errorf("fortio load: %w: %s", p.err, p.tail())
	}
	// Batched spans and deferred work of this run belong to it.
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	cpu1, err := cpuSum(pids)
	if err != nil {
		return r, fmt.Errorf("after the run: %w", err)
	}
	rx1, err := cpuSum([]int{e.sink.pid()})
	if err != nil {
		return r, fmt.Errorf("after the run: %w", err)
	}
	for _, pid := range pids {
		mb, err := bench.PeakRSSMB(pid)
		if err != nil {
			return r, err
		}
		r.RSSMB += mb
	}
	spans1, err := e.spans(ctx)
	if err != nil {
		return r, err
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return r, fmt.Errorf("fortio result: %w", err)
	}
	f, err := bench.ParseFortio(data)
	if err != nil {
		return r, err
	}
	r.RPS, r.Requests, r.Errors, r.DurationS = f.RPS, f.Requests, f.Errors, f.Seconds
	r.P50us, r.P90us, r.P99us, r.P999us = f.P50us, f.P90us, f.P99us, f.P999us
	r.CPUSeconds = cpu1 - cpu0
	r.Spans = spans1 - spans0
	if r.Spans > 0 {
		r.ReceiverCPUSeconds = rx1 - rx0
	}
	return r, nil
}

// sampleStatus samples the processes' memory and threads every 100ms until
// done is closed, then sends the sample whose summed RSS was largest (with the
// most threads seen).
func sampleStatus(pids []int, done <-chan struct{}) <-chan bench.Status {
	out := make(chan bench.Status, 1)
	go func() {
		var peak bench.Status
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			var sum bench.Status
			for _, pid := range pids {
				if st, err := bench.ReadStatus(pid); err == nil {
					sum.AnonMB += st.AnonMB
					sum.FileMB += st.FileMB
					sum.Threads += st.Threads
				}
			}
			if sum.AnonMB+sum.FileMB > peak.AnonMB+peak.FileMB {
				peak.AnonMB, peak.FileMB = sum.AnonMB, sum.FileMB
			}
			peak.Threads = max(peak.Threads, sum.Threads)
			select {
			case <-done:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

func cpuSum(pids []int) (float64, error) {
	var total float64
	for _, pid := range pids {
		s, err := bench.CPUSeconds(pid)
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		total += s
	}
	return total, nil
}

// awaitSpans waits until the receiver has more spans than before.
func awaitSpans(ctx context.Context, e *env, before int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, err := e.spans(ctx)
		if err != nil {
			return err
		}
		if n > before {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no span reached the OTLP receiver %s after the warm-up", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
