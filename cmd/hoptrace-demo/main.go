// Command hoptrace-demo runs `make demo`: a node in a box with the sample app in
// simulated pods, captured by a real hoptrace agent with real BPF, exporting to a
// real Jaeger. It prints where to look and one trace as a tree, and cleans up
// everything on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/internal/demo"
)

func main() {
	bin := flag.String("bin", "bin", "directory with the hoptrace and sampleapp binaries")
	work := flag.String("work", "", "directory for the pods file and logs (default: a new temp dir)")
	otlp := flag.String("otlp-endpoint", "http://127.0.0.1:4317", "Jaeger's OTLP/gRPC endpoint")
	ui := flag.String("jaeger-ui", "http://127.0.0.1:16686", "Jaeger's UI and query API")
	interval := flag.Duration("interval", time.Second, "time between client requests")
	exitAfter := flag.Duration("exit-after", 0, "stop after this long instead of waiting for Ctrl-C (0: wait)")
	flag.Parse()
	if err := run(*bin, *work, *otlp, *ui, *interval, *exitAfter); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(bin, work, otlp, ui string, interval, exitAfter time.Duration) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo loads BPF programs and creates network namespaces: run it as root (sudo make demo)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if work == "" {
		d, err := os.MkdirTemp("", "hoptrace-demo-")
		if err != nil {
			return err
		}
		work = d
	}
	bin, _ = filepath.Abs(bin)
	fmt.Println("== starting the node in a box")
	env, err := demo.Up(ctx, demo.Config{BinDir: bin, WorkDir: work, OTLPEndpoint: otlp, Log: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("== cleaning up: agent, pods, bridge, cgroups, BPF pins")
		if err := env.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}()
	fmt.Printf("== client calls %s every %s: client → hello (HTTP/1.1) → world (HTTP/1.1) → emoji (gRPC)\n", env.HelloURL(), interval)
	if err := env.StartClient(interval); err != nil {
		return err
	}
	t, err := demo.WaitTrace(ctx, ui, "client", "hello", 12, 60*time.Second)
	if err != nil {
		return err
	}
	fmt.Println()
	demo.PrintTree(os.Stdout, t)
	fmt.Printf("\n== and %s every %s: client → legacy-a → legacy-b (Python apps that forward NO trace headers) → world → emoji\n", env.LegacyURL(), interval)
	fmt.Println("   linked by context inference (--infer-context, pods annotated hoptrace.io/context: infer)")
	if err := env.StartLegacyClient(interval); err != nil {
		return err
	}
	lt, err := demo.WaitTrace(ctx, ui, "client", "legacy-b", 16, 60*time.Second)
	if err != nil {
		return err
	}
	fmt.Println()
	demo.PrintTree(os.Stdout, lt)
	fmt.Printf(`
== look at it
   the traces:  %s/api/traces/%s   (Jaeger's query API, JSON)
                %s/api/traces/%s   (the apps that forward nothing)
   Jaeger UI:   %s/trace/%s
                (a Jaeger built from the Go module has no UI assets and shows a
                placeholder there; a Jaeger with its UI, e.g. the official image,
                shows the same trace at that address)
   flows:       sudo bin/hoptrace flows --admin-socket %s
   pods:        sudo bin/hoptrace pods --admin-socket %s
   metrics:     sudo curl -s --unix-socket %s http://agent/metrics | grep hoptrace_
   logs:        %s
`, ui, t.TraceID, ui, lt.TraceID, ui, t.TraceID, env.AdminSocket, env.AdminSocket, env.AdminSocket, work)
	if exitAfter > 0 {
		fmt.Printf("== running for %s\n", exitAfter)
		select {
		case <-time.After(exitAfter):
		case <-ctx.Done():
		}
		return nil
	}
	fmt.Println("== running; press Ctrl-C to stop and clean up")
	<-ctx.Done()
	return nil
}
