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
	out        string // results.json
	meta       string // results.meta.json
	duration   time.Duration
	settle     time.Duration
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
	flag.StringVar(&cfg.out, "out", "bench/results.json", "results file")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of each measured run")
	flag.DurationVar(&cfg.settle, "settle", time.Second, "pause after each run before reading CPU and span counts (lets batched spans go out)")
	flag.StringVar(&setups, "setups", "", "comma-separated setups to run (default all: "+strings.Join(allSetupNames(), ",")+")")
	flag.StringVar(&scns, "scenarios", "", "comma-separated scenarios to run (default all)")
	flag.StringVar(&cfg.profileDir, "profile-dir", "", "write iptproxy's CPU profile here (and serve its net/http/pprof on 127.0.0.1:6061)")
	flag.StringVar(&cfg.command, "command", strings.Join(os.Args, " "), "the command to record in results.meta.json")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	cfg.setups, cfg.scenarios = splitList(setups), splitList(scns)
	cfg.meta = strings.TrimSuffix(cfg.out, ".json") + ".meta.json"
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
		newNginx(cfg.nginx),
		newCaddy(cfg.caddy),
		&iptablesSetup{},
	}
}

// extraSetups run only when named with -setups: tools for profiling, not part
// of the comparison.
func extraSetups() []setup {
	return []setup{&iptablesSetup{sampleRate: 1}}
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
	if cfg.workDir == "" {
		if cfg.workDir, err = os.MkdirTemp("", "hoptrace-bench-"); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.workDir, 0o755); err != nil {
		return err
	}
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
		return fmt.Errorf("no setup matches %v; have %v", cfg.setups, allSetupNames())
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
	log.Printf("work dir %s; %d setups × %d scenarios of %s", cfg.workDir, len(chosen), len(scns), cfg.duration)

	e, err := newEnv(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := e.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()
	log.Printf("node %s: client %s, server %s", e.node.ID, e.client.IPv4, e.server.IPv4)

	var results []bench.Result
	var failed []string
	partial := filepath.Join(cfg.workDir, "results.partial.json")
	for _, st := range chosen {
		rs, err := runSetup(ctx, e, st, scns)
		results = append(results, rs...)
		if err != nil {
			log.Printf("%s: %v", st.name(), err)
			failed = append(failed, fmt.Sprintf("%s: %v", st.name(), err))
		}
		if err := bench.WriteJSON(partial, results); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	meta := machineMeta(cfg)
	meta.Elapsed = time.Since(began).Round(time.Second).String()
	meta.Notes = failed
	if err := bench.WriteJSON(cfg.out, results); err != nil {
		return err
	}
	if err := bench.WriteJSON(cfg.meta, meta); err != nil {
		return err
	}
	log.Printf("wrote %s and %s in %s", cfg.out, cfg.meta, meta.Elapsed)
	if len(failed) > 0 {
		return fmt.Errorf("%d setups failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}
