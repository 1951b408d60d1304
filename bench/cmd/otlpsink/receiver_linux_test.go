package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/bench"
	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/spans"
)

// TestMain runs the receiver itself when a benchmark starts this test binary
// as its child, so that the receiver's CPU time is a process's of its own.
func TestMain(m *testing.M) {
	if procs := os.Getenv("OTLPSINK_BENCH_CHILD"); procs != "" {
		os.Args = []string{"otlpsink", "-procs", procs}
		main()
		return
	}
	os.Exit(m.Run())
}

// BenchmarkReceiver is what the receiver costs the benchmark's cores: the
// exporter sends spans at a steady 40,000 per second (a traced agent's rate
// at 10,000 req/s) in 512-span batches to the receiver in a child process,
// and sink-cpu-µs/4spans is the child's utime+stime per four spans, the
// share of one traced request. Run it long enough for many batches:
//
//	go test -run '^$' -bench Receiver -benchtime 320000x ./bench/cmd/otlpsink/
func BenchmarkReceiver(b *testing.B) {
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "OTLPSINK_BENCH_CHILD="+strconv.Itoa(procs))
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() {
				cmd.Process.Signal(os.Interrupt)
				cmd.Wait()
			}()
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				b.Fatalf("receiver: %v", err)
			}
			addr, _, ok := strings.Cut(strings.TrimPrefix(line, "ready otlp="), " ")
			if !ok {
				b.Fatalf("receiver said %q", line)
			}
			e, err := exporter.New(exporter.Config{
				Endpoint: "http://" + addr, Compression: exporter.CompressionNone,
				Logger:       slog.New(slog.DiscardHandler),
				MaxQueueSize: 65536, MaxBatchSize: 512, BatchTimeout: 5 * time.Second,
			})
			if err != nil {
				b.Fatal(err)
			}
			pool := benchSpans(1024)
			const rate = 40000 // spans per second
			cpu0 := childCPU(b, cmd.Process.Pid)
			b.ResetTimer()
			start := time.Now()
			for n := 0; n < b.N; {
				due := min(b.N, int(time.Since(start).Seconds()*rate))
				for ; n < due; n++ {
					e.Record(pool[n%len(pool)])
				}
				time.Sleep(time.Millisecond)
			}
			if err := e.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu := childCPU(b, cmd.Process.Pid) - cpu0
			e.Shutdown(context.Background())
			if s := e.Stats(); s.Exported != uint64(b.N) {
				b.Fatalf("exporter stats %+v: want all %d spans exported", s, b.N)
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)*4, "sink-cpu-µs/4spans")
		})
	}
}

// childCPU is a process's utime+stime.
func childCPU(tb testing.TB, pid int) time.Duration {
	secs, err := bench.CPUSeconds(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return time.Duration(secs * float64(time.Second))
}

// benchSpans returns n requests' worth of spans shaped like a traced hop's
// (four legs, the attributes of docs/proxy.md's HTTP spans).
func benchSpans(n int) []*spans.Span {
	res := func(pod string) *spans.Resource {
		return &spans.Resource{Attrs: []spans.Attr{
			spans.String("service.name", pod), spans.String("k8s.pod.name", pod+"-7d9f8"),
			spans.String("k8s.namespace.name", "bench"), spans.String("k8s.node.name", "node-1"),
		}}
	}
	client, server := res("client"), res("server")
	out := make([]*spans.Span, 0, 4*n)
	now := time.Now()
	for i := range n {
		trace := spans.NewTraceID()
		parent := spans.SpanID{}
		for leg := spans.OutboundServer; leg <= spans.InboundClient; leg++ {
			r := client
			if leg >= spans.InboundServer {
				r = server
			}
			s := &spans.Span{
				TraceID: trace, SpanID: spans.NewSpanID(), ParentID: parent, Flags: 1,
				Name: "GET", Kind: leg.Kind(), Resource: r,
				Start: now.Add(time.Duration(i) * time.Millisecond), End: now.Add(time.Duration(i)*time.Millisecond + 200*time.Microsecond),
				Attrs: []spans.Attr{
					spans.String("http.request.method", "GET"), spans.String("url.path", "/echo"),
					spans.String("server.address", "server.bench"), spans.Int("server.port", 8080),
					spans.Int("http.response.status_code", 200), spans.String("network.peer.address", "10.77.0.2"),
					spans.String("hoptrace.leg", leg.String()),
				},
			}
			parent = s.SpanID
			out = append(out, s)
		}
	}
	return out
}
