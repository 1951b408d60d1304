package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/bench"
)

type config struct {
	binDir     string // hoptrace, otlpsink, iptproxy
	fortio     string
	caddy      string
	nginx      string
	workDir    string // logs, configs, fortio output, node-id
	out        string // results.json: medians over the rounds
	runs       string // results.runs.json: every run
	meta       string // results.meta.json
	nodeIDFile string // the current node's id, for scripts/bench.sh to clean up after a crash
	duration   time.Duration
	settle     time.Duration
	rounds     int
	setups     []string
	scenarios  []string
	profileDir string
	command    string
}

func main() {
	var cfg config
	var setups, scns string
	flag.StringVar(&cfg.binDir, "bin-dir", "", "directory holding hoptrace, otlpsink and iptproxy")
	flag.StringVar(&cfg.fortio, "fortio", "fortio", "fortio binary")
	flag.StringVar(&cfg.caddy, "caddy", "caddy", "caddy binary")
	flag.StringVar(&cfg.nginx, "nginx", "nginx", "nginx binary")
	flag.StringVar(&cfg.workDir, "work-dir", "", "scratch directory for logs and configs (default: a new temporary one)")
	flag.StringVar(&cfg.out, "out", "bench/results.json", "results file (medians); every run goes to <out without .json>.runs.json")
	// 3 rounds of 3 s: about 15 minutes for the whole matrix on the 2-core VM
	// (per round 71 runs of 3 s plus about a minute and a half of warm-ups, settling,
	// starting and stopping).
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "length of each measured run")
	flag.IntVar(&cfg.rounds, "rounds", 3, "how many times to run the whole matrix, each round on fresh pods; results.json holds the medians")
	flag.DurationVar(&cfg.settle, "settle", time.Second, "pause after each run of a setup that exports spans before reading its CPU and span counts (lets batched spans go out); other proxies get 200ms")
	flag.StringVar(&setups, "setups", "", "comma-separated setups to run (default all: "+strings.Join(allSetupNames(), ",")+")")
	flag.StringVar(&scns, "scenarios", "", "comma-separated scenarios to run (default all)")
	flag.StringVar(&cfg.profileDir, "profile-dir", "", "write iptproxy's CPU profile here (and serve its net/http/pprof on 127.0.0.1:6061)")
	flag.StringVar(&cfg.command, "command", strings.Join(os.Args, " "), "the command to record in results.meta.json")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	cfg.setups, cfg.scenarios = splitList(setups), splitList(scns)
	cfg.meta = strings.TrimSuffix(cfg.out, ".json") + ".meta.json"
	cfg.runs = strings.TrimSuffix(cfg.out, ".json") + ".runs.json"
	if os.Geteuid() != 0 {
		log.Fatal("needs root: it creates network namespaces and cgroups, loads BPF and sets iptables rules in the pods (sudo make bench)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, cfg)
	stop()
	if err != nil {
		log.Fatal(err)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// newSetups lists every setup in the order they run: direct first, iptables
// last (see iptablesSetup).
func newSetups(cfg config) []setup {
	return []setup{
		direct{},
		&hoptraceSetup{sampleRate: 1},
		&hoptraceSetup{sampleRate: 0},
		&hoptraceSetup{sampleRate: 1, tcpHop: true},
		&hoptraceSetup{sampleRate: 1, allCores: true},
		&hoptraceSetup{sampleRate: 1, crossNode: true},
		newNginx(cfg.nginx),
		newCaddy(cfg.caddy),
		// The two that turn connection tracking on in the pods, last.
		&hoptraceSetup{sampleRate: 1, service: true},
		&iptablesSetup{},
	}
}

// extraSetups run only when named with -setups: tools for profiling, and the
// sk_msg fast path (off by default, measured without gain: docs/benchmarks.md).
func extraSetups() []setup {
	return []setup{&iptablesSetup{sampleRate: 1}, &hoptraceSetup{sampleRate: 1, fastPath: true}}
}

func allSetupNames() []string {
	var names []string
	for _, s := range newSetups(config{}) {
		names = append(names, s.name())
	}
	return names
}

func run(ctx context.Context, cfg config) (err error) {
	began := time.Now()
	if cfg.rounds < 1 {
		return fmt.Errorf("-rounds %d: need at least one", cfg.rounds)
	}
	if cfg.workDir == "" {
		if cfg.workDir, err = os.MkdirTemp("", "hoptrace-bench-"); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.workDir, 0o755); err != nil {
		return err
	}
	cfg.nodeIDFile = filepath.Join(cfg.workDir, "node-id")
	chosen, err := chooseSetups(cfg)
	if err != nil {
		return err
	}
	var scns []scenario
	for _, s := range scenarios {
		if len(cfg.scenarios) == 0 || slices.Contains(cfg.scenarios, s.name) {
			scns = append(scns, s)
		}
	}
	if len(scns) == 0 {
		return fmt.Errorf("no scenario matches %v", cfg.scenarios)
	}
	var names []string
	for _, s := range chosen {
		names = append(names, s.name())
	}
	log.Printf("work dir %s; %d rounds of %s × %d scenarios, runs of %s", cfg.workDir, cfg.rounds, strings.Join(names, ","), len(scns), cfg.duration)

	var (
		runs   []bench.Result
		rounds []bench.Round
		failed []string
	)
	partial := filepath.Join(cfg.workDir, "results.partial.json")
	for round := 1; round <= cfg.rounds; round++ {
		rs, rm, fails, err := runRound(ctx, cfg, round, scns)
		runs = append(runs, rs...)
		rounds = append(rounds, rm)
		failed = append(failed, fails...)
		if werr := bench.WriteJSON(partial, runs); werr != nil {
			return errors.Join(err, werr)
		}
		if err != nil {
			return fmt.Errorf("round %d: %w (runs so far in %s)", round, err, partial)
		}
		log.Printf("round %d of %d done in %s (load average %.2f when it began; %s since the start)",
			round, cfg.rounds, rm.Elapsed, rm.Load1, time.Since(began).Round(time.Second))
	}
	meta := machineMeta(cfg)
	meta.Elapsed = time.Since(began).Round(time.Second).String()
	meta.RunSeconds = cfg.duration.Seconds()
	meta.Rounds = rounds
	meta.Notes = failed
	for _, s := range scns {
		meta.Scenarios = append(meta.Scenarios, bench.ScenarioInfo{Name: s.name, What: s.what})
	}
	if err := bench.WriteJSON(cfg.runs, runs); err != nil {
		return err
	}
	if err := bench.WriteJSON(cfg.out, bench.Summarize(runs)); err != nil {
		return err
	}
	if err := bench.WriteJSON(cfg.meta, meta); err != nil {
		return err
	}
	log.Printf("wrote %s, %s and %s in %s", cfg.out, cfg.runs, cfg.meta, meta.Elapsed)
	if len(failed) > 0 {
		return fmt.Errorf("%d setups failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// chooseSetups returns new instances of the setups -setups names (all of the
// matrix by default), in the order they run.
func chooseSetups(cfg config) ([]setup, error) {
	var chosen []setup
	if len(cfg.setups) == 0 {
		chosen = newSetups(cfg)
	}
	for _, s := range append(newSetups(cfg), extraSetups()...) {
		if slices.Contains(cfg.setups, s.name()) {
			chosen = append(chosen, s)
		}
	}
	if len(chosen) == 0 {
		return nil, fmt.Errorf("no setup matches %v; have %v", cfg.setups, allSetupNames())
	}
	return chosen, nil
}

// runRound runs every chosen setup once, in order, on a node with fresh pods:
// no state of an earlier round (iptables rules and the conntrack entries they
// left, TIME_WAIT sockets, warmed-up servers) carries over, and slow changes of
// the machine's load fall on every setup alike. A setup that fails is reported
// in failed and the round goes on; err is for the round itself.
func runRound(ctx context.Context, cfg config, round int, scns []scenario) (runs []bench.Result, rm bench.Round, failed []string, err error) {
	began := time.Now()
	rm = bench.Round{Round: round, Began: began.UTC().Format(time.RFC3339), Conntrack: map[string]int{}}
	rm.Load1, _ = bench.LoadAvg1()
	rm.Load1Min, rm.Load1Max = rm.Load1, rm.Load1
	defer func() {
		rm.Elapsed = time.Since(began).Round(time.Second).String()
		for _, r := range runs {
			rm.Load1Min, rm.Load1Max = min(rm.Load1Min, r.Load1), max(rm.Load1Max, r.Load1)
		}
	}()
	chosen, err := chooseSetups(cfg)
	if err != nil {
		return nil, rm, nil, err
	}
	// Logs, configs and fortio output of each round go to a directory of
	// their own.
	cfg.workDir = filepath.Join(cfg.workDir, fmt.Sprintf("round-%d", round))
	if err := os.MkdirAll(cfg.workDir, 0o755); err != nil {
		return nil, rm, nil, err
	}
	log.Printf("=== round %d of %d (load average %.2f)", round, cfg.rounds, rm.Load1)
	e, err := newEnv(ctx, cfg)
	if err != nil {
		return nil, rm, nil, err
	}
	e.round = round
	defer func() {
		if cerr := e.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()
	log.Printf("node %s: client %s, server %s", e.node.ID, e.client.IPv4, e.server.IPv4)
	for _, st := range chosen {
		rs, conntrack, err := runSetup(ctx, e, st, scns)
		for i := range rs {
			rs[i].Round = round
		}
		runs = append(runs, rs...)
		if conntrack >= 0 {
			rm.Conntrack[st.name()] = conntrack
			if ns, ok := st.(natSetup); !(ok && ns.usesNAT()) && conntrack > 0 {
				msg := fmt.Sprintf("round %d: %s: connection tracking is on in the pods (%d entries after the warm-up), which taxes this setup", round, st.name(), conntrack)
				log.Print(msg)
				failed = append(failed, msg)
			}
		}
		if err != nil {
			log.Printf("%s: %v", st.name(), err)
			failed = append(failed, fmt.Sprintf("round %d: %s: %v", round, st.name(), err))
		}
		if ctx.Err() != nil {
			return runs, rm, failed, ctx.Err()
		}
	}
	return runs, rm, failed, nil
}
