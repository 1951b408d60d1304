// Command perfshare reads `perf script` output (call stacks, perf record -g)
// and reports the share of samples whose stack passes through given
// functions: by default the agent's tracing, which is how the tracing budget
// of docs/benchmarks.md is attributed. With -runs (a benchrun runs file of
// the same run) it turns the share into microseconds of CPU per request.
//
//	perf script -i perf.data | perfshare -runs r.runs.json
//
// scripts/tracecost.sh runs the whole measurement.
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

// Tracing, as the agent does it: the spans built when a request ends
// (proxy legs.finish, which also calls the request observer, untraced work
// left out), the export queue, and the exporter's worker (encoding, sending).
// The x/net/http2 client's goroutines are the exporter's transport in builds
// before h2Caller (2026-12-05), so that those can be compared; the proxy uses
// that client too, but only towards HTTP/2 upstreams, which http-max has none
// of.
const (
	defaultInclude = "proxy.(*legs).finish,exporter.(*queue).push,exporter.(*Exporter).run," +
		"golang.org/x/net/http2.(*ClientConn),golang.org/x/net/http2.(*clientStream),golang.org/x/net/http2.(*clientConnReadLoop)"
	defaultExclude = "ObserveRequest"
)

func main() {
	include := flag.String("include", defaultInclude, "comma-separated: a sample counts when a frame contains one of these")
	exclude := flag.String("exclude", defaultExclude, "comma-separated: ... and no frame contains one of these")
	runs := flag.String("runs", "", "benchrun runs file of the profiled run: report µs of CPU per request too")
	flag.Parse()
	total, matched, err := count(os.Stdin, split(*include), split(*exclude))
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
		perReq := r.CPUSeconds / float64(r.Requests) * 1e6
		fmt.Printf(" of %.1f µs/req (%s %s, %.0f req/s): %.2f µs/req", perReq, r.Setup, r.Scenario, r.RPS, share*perReq)
	}
	fmt.Println()
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

// count reads perf script's samples: a header line, then one indented line
// per frame ("addr symbol+offset (dso)"), a blank line between samples.
func count(r io.Reader, include, exclude []string) (total, matched int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in, inc, exc := false, false, false
	end := func() {
		if in {
			total++
			if inc && !exc {
				matched++
			}
		}
		in, inc, exc = false, false, false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			end()
		case line[0] != ' ' && line[0] != '\t':
			end()
			in = true
		default:
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			sym := f[1]
			inc = inc || containsAny(sym, include)
			exc = exc || containsAny(sym, exclude)
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
