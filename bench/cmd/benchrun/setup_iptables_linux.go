package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/nodebox"
)

// iptablesMark is the SO_MARK of iptproxy's upstream dials; the OUTPUT rule
// lets marked connections through.
const iptablesMark = 0x1bad

// iptablesRules redirect a pod's TCP the way an init container does: its own
// outbound connections to the outbound listener, connections arriving for it to
// the inbound listener. They go into the pod's netns only.
var iptablesRules = fmt.Sprintf(`*nat
:HTBENCH_OUT - [0:0]
:HTBENCH_IN - [0:0]
-A HTBENCH_OUT -m mark --mark %#x -j RETURN
-A HTBENCH_OUT -d 127.0.0.0/8 -j RETURN
-A HTBENCH_OUT -p tcp -j REDIRECT --to-ports 15001
-A HTBENCH_IN -p tcp -m multiport --dports 15001,15006 -j RETURN
-A HTBENCH_IN -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -p tcp -j HTBENCH_OUT
-A PREROUTING -p tcp -j HTBENCH_IN
COMMIT
`, iptablesMark)

const iptablesUnrules = `*nat
-D OUTPUT -p tcp -j HTBENCH_OUT
-D PREROUTING -p tcp -j HTBENCH_IN
-F HTBENCH_OUT
-F HTBENCH_IN
-X HTBENCH_OUT
-X HTBENCH_IN
COMMIT
`

// iptablesSetup is the hoptrace proxy package (bench/cmd/iptproxy) behind
// iptables REDIRECT rules. At sampling 0 (the matrix's "iptables") it is the
// same proxy as hoptrace-0 with the other capture; "iptables-100" exports every
// span, for profiling the traced path with Go's profiler.
//
// It runs last in a round: its REDIRECT rules turn connection tracking on in
// the pods' namespaces, which would tax every setup after it. On Linux 6.18
// (iptables-nft and -legacy alike) deleting the rules turns it off again for
// new connections; other kernels may keep it on. Each round starts on fresh
// pods, and after every setup's warm-up runRound checks that conntrack is off
// for all but this one.
type iptablesSetup struct {
	sampleRate float64
	proxy      *proc
	ruledPods  []*nodebox.Pod
}

func (s *iptablesSetup) name() string {
	if s.sampleRate > 0 {
		return fmt.Sprintf("iptables-%g", s.sampleRate*100)
	}
	return "iptables"
}

func (s *iptablesSetup) traces() bool                      { return s.sampleRate > 0 }
func (s *iptablesSetup) usesNAT() bool                     { return true }
func (s *iptablesSetup) target(e *env, sc scenario) string { return transparentTarget(e, sc) }
func (s *iptablesSetup) pids() []int                       { return []int{s.proxy.pid()} }

func (s *iptablesSetup) start(ctx context.Context, e *env) error {
	for _, p := range []*nodebox.Pod{e.client, e.server} {
		if err := iptablesRestore(ctx, p, iptablesRules); err != nil {
			s.stop()
			return err
		}
		s.ruledPods = append(s.ruledPods, p)
	}
	args := []string{"-mark", strconv.Itoa(iptablesMark), "-sample-rate", strconv.FormatFloat(s.sampleRate, 'g', -1, 64)}
	if s.sampleRate > 0 {
		args = append(args, "-otlp-endpoint", "http://"+e.otlpAddr)
	}
	for _, p := range []*nodebox.Pod{e.client, e.server} {
		// The same local hand-off as the agent's default: the setups differ
		// in capture only.
		args = append(args, "-outbound", p.NetnsPath, "-inbound", p.NetnsPath,
			"-local-handoff-addr", p.IPv4.String(), "-local-handoff-addr", p.IPv6.String())
	}
	if e.cfg.profileDir != "" {
		// The CPU profile covers the setup's whole life; heap profiles are
		// taken mid-run from the pprof address.
		prof := s.name()
		if e.cfg.rounds > 1 {
			prof += fmt.Sprintf(".round-%d", e.round)
		}
		args = append(args, "-cpuprofile", filepath.Join(e.cfg.profileDir, prof+".cpu.pprof"),
			"-pprof-addr", "127.0.0.1:6061")
	}
	var err error
	s.proxy, _, err = startAndAwaitLine(ctx, e.cfg.workDir, "iptproxy", nil,
		exec.Command(filepath.Join(e.cfg.binDir, "iptproxy"), args...), "ready", 15*time.Second)
	if err != nil {
		s.stop()
		return err
	}
	return nil
}

// verify checks that the warm-up went through the REDIRECT rule.
func (s *iptablesSetup) verify(ctx context.Context, e *env) error {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", e.client.NetnsName,
		"iptables", "-w", "-t", "nat", "-L", "HTBENCH_OUT", "-n", "-v", "-x").CombinedOutput()
	if err != nil {
		return fmt.Errorf("read iptables counters: %w: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "REDIRECT" {
			if n, _ := strconv.Atoi(f[0]); n > 0 {
				return nil
			}
		}
	}
	return fmt.Errorf("REDIRECT rule matched no connection: traffic is not captured:\n%s", out)
}

func (s *iptablesSetup) stop() error {
	var errs []error
	if s.proxy != nil {
		errs = append(errs, s.proxy.stop(10*time.Second))
	}
	for _, p := range s.ruledPods {
		errs = append(errs, iptablesRestore(context.Background(), p, iptablesUnrules))
	}
	s.ruledPods = nil
	return errors.Join(errs...)
}

// iptablesRestore applies rules (iptables-restore format, added to what is
// there) inside pod's network namespace.
func iptablesRestore(ctx context.Context, p *nodebox.Pod, rules string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", p.NetnsName, "iptables-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables in pod %s: %w: %s", p.Name, err, out)
	}
	return nil
}
