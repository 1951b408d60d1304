package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // exporters may compress

	"github.com/hoptrace/hoptrace/netns"
)

// Stats is what GET / on the stats address returns.
type Stats struct {
	Requests int64 `json:"requests"`
	Spans    int64 `json:"spans"`
}

type sink struct {
	coltracepb.UnimplementedTraceServiceServer
	requests, spans atomic.Int64
}

func (s *sink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	s.requests.Add(1)
	s.spans.Add(int64(n))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func main() {
	var namespaces []string
	flag.Func("netns", "also listen on -pod-addr inside this network namespace (repeatable)", func(v string) error {
		namespaces = append(namespaces, v)
		return nil
	})
	podAddr := flag.String("pod-addr", "127.0.0.1:4317", "OTLP address inside each -netns")
	flag.Parse()
	log.SetPrefix("otlpsink: ")
	log.SetFlags(0)
	if err := run(namespaces, *podAddr); err != nil {
		log.Fatal(err)
	}
}

func run(namespaces []string, podAddr string) error {
	s := &sink{}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	coltracepb.RegisterTraceServiceServer(srv, s)

	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	host, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	lns := []net.Listener{host}
	for _, path := range namespaces {
		err := netns.DoPath(path, func() error {
			ln, err := lc.Listen(context.Background(), "tcp", podAddr)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
			return nil
		})
		if err != nil {
			return fmt.Errorf("listen in %s: %w", path, err)
		}
	}
	statsLn, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for stats: %w", err)
	}
	stats := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(Stats{Requests: s.requests.Load(), Spans: s.spans.Load()})
	})}
	go stats.Serve(statsLn)
	for _, ln := range lns {
		go srv.Serve(ln)
	}
	fmt.Printf("ready otlp=%s stats=%s\n", host.Addr(), statsLn.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Stop()
	stats.Close()
	log.Printf("received %d spans in %d exports", s.spans.Load(), s.requests.Load())
	return nil
}
