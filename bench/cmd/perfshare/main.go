// Command perfshare reads `perf script` output (call stacks, perf record -g)
// and reports the share of samples whose stack passes through given
// functions: by default the agent's tracing, which is how the tracing budget
// of docs/benchmarks.md is attributed. With -runs (a benchrun runs file of
// the same run) it turns the share into microseconds of CPU per request.
//
//	perf script -i perf.data | perfshare -runs r.runs.json
//
// With -cpus, the profile is of every CPU (perf record -a): the share is of the
// machine's time, and the microseconds are the machine's per request, whatever
// process spent them. That is how capture is attributed, the kernel's work
// included (-preset capture-bpf, capture-netfilter).
//
// scripts/tracecost.sh and scripts/capturecost.sh run the whole measurements.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hoptrace/hoptrace/bench"
)

// A preset is what one measurement counts: a sample counts when a frame of
// its stack contains one of include and none contains one of exclude.
type preset struct{ include, exclude string }

var presets = map[string]preset{
	// Tracing, as the agent does it: the spans built when a request ends
	// (proxy legs.finish, which also calls the request observer, untraced
	// work left out), the export queue, and the exporter's worker (encoding,
	// sending). The x/net/http2 client's goroutines are the exporter's
	// transport in builds before h2Caller (2026-12-05), so that those can be
	// compared; the proxy uses that client too, but only towards HTTP/2
	// upstreams, which http-max has none of.
	"tracing": {
		include: "proxy.(*legs).finish,exporter.(*queue).push,exporter.(*Exporter).run," +
			"golang.org/x/net/http2.(*ClientConn),golang.org/x/net/http2.(*clientStream),golang.org/x/net/http2.(*clientConnReadLoop)",
		exclude: "ObserveRequest",
	},
	// eBPF capture, wherever it runs: hoptrace's programs (the cgroup hooks'
	// runners: connect, sockops, getpeername/getsockname; sk_lookup's own
	// frames), socket-local storage made and freed with the sockets, the
	// agent's bpf() calls, and its original-destination look-up.
	"capture-bpf": {
		include: "_hoptrace_,__cgroup_bpf_run_filter,__sys_bpf,bpf_local_storage,bpf_sk_storage,redirect.outboundResolver.OriginalDst",
	},
	// iptables capture: every netfilter hook (conntrack, NAT, the rules),
	// SO_ORIGINAL_DST, and conntrack entries freed.
	"capture-netfilter": {
		include: "nf_hook_slow,nf_getsockopt,getorigdst,nf_ct_,nf_conntrack,destroy_conntrack",
	},
}

// everything, as an include, counts every sample: with -comm, a process's
// whole share.
const everything = "*"

func main() {
	name := flag.String("preset", "tracing", "what to count: tracing, capture-bpf or capture-netfilter; -include and -exclude override it")
	include := flag.String("include", "", "comma-separated: a sample counts when a frame contains one of these (* for every sample)")
	exclude := flag.String("exclude", "", "comma-separated: ... and no frame contains one of these")
	comm := flag.String("comm", "", "count only samples of this command (perf's comm, the header's first field)")
	cpus := flag.Int("cpus", 0, "the profile was of every CPU (perf record -a) of this many: report the machine's µs per request")
	runs := flag.String("runs", "", "benchrun runs file of the profiled run: report µs of CPU per request too")
	flag.Parse()
	p, ok := presets[*name]
	if !ok {
		fmt.Fprintf(os.Stderr, "perfshare: no preset %q (tracing, capture-bpf, capture-netfilter)\n", *name)
		os.Exit(2)
	}
	if *include != "" {
		p = preset{include: *include, exclude: *exclude}
	} else if *exclude != "" {
		p.exclude = *exclude
	}
	total, matched, err := count(os.Stdin, filter{include: split(p.include), exclude: split(p.exclude), comm: *comm})
	if err != nil {
		fmt.Fprintln(os.Stderr, "perfshare:", err)
		os.Exit(1)
	}
	if total == 0 {
		fmt.Fprintln(os.Stderr, "perfshare: no samples in the input (perf script of a perf record -g?)")
		os.Exit(1)
	}
	share := float64(matched) / float64(total)
	fmt.Printf("samples %d, matched %d: %.2f%%", total, matched, 100*share)
	if *runs != "" {
		r, err := firstRun(*runs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "\nperfshare:", err)
			os.Exit(1)
		}
		fmt.Print(perRequest(share, *cpus, r))
	}
	fmt.Println()
}

// perRequest turns a share of the samples into microseconds per request: of
// the profiled process's CPU (its CPU seconds in the run), or with cpus of the
// machine's (every CPU's time: share × cpus seconds per second, over the
// requests per second).
func perRequest(share float64, cpus int, r bench.Result) string {
	if cpus > 0 {
		return fmt.Sprintf(" of %d CPUs (%s %s, %.0f req/s): %.2f µs/req", cpus, r.Setup, r.Scenario, r.RPS, share*float64(cpus)/r.RPS*1e6)
	}
	perReq := r.CPUSeconds / float64(r.Requests) * 1e6
	return fmt.Sprintf(" of %.1f µs/req (%s %s, %.0f req/s): %.2f µs/req", perReq, r.Setup, r.Scenario, r.RPS, share*perReq)
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// filter is what count counts.
type filter struct {
	include, exclude []string
	comm             string // "": every command's samples
}

// count reads perf script's samples: a header line (the command first), then
// one indented line per frame ("addr symbol+offset (dso)"), a blank line
// between samples.
func count(r io.Reader, f filter) (total, matched int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	all := len(f.include) == 1 && f.include[0] == everything
	in, inc, exc, ours := false, false, false, false
	end := func() {
		if in {
			total++
			if ours && (all || inc) && !exc {
				matched++
			}
		}
		in, inc, exc, ours = false, false, false, false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			end()
		case line[0] != ' ' && line[0] != '\t':
			end()
			in = true
			ours = f.comm == "" || strings.Fields(line)[0] == f.comm
		default:
			fs := strings.Fields(line)
			if len(fs) < 2 {
				continue
			}
			sym := fs[1]
			inc = inc || containsAny(sym, f.include)
			exc = exc || containsAny(sym, f.exclude)
		}
	}
	end()
	return total, matched, sc.Err()
}

func containsAny(s string, subs []string) bool {
	for _, p := range subs {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func firstRun(path string) (bench.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return bench.Result{}, err
	}
	var rs []bench.Result
	if err := json.Unmarshal(b, &rs); err != nil {
		return bench.Result{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(rs) == 0 || rs[0].Requests == 0 {
		return bench.Result{}, fmt.Errorf("%s: no run with requests", path)
	}
	return rs[0], nil
}
