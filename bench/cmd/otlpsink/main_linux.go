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
	"runtime"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // exporters may compress
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/hoptrace/hoptrace/netns"
)

// Stats is what GET / on the stats address returns.
type Stats struct {
	Requests int64 `json:"requests"`
	Spans    int64 `json:"spans"`
}

type sink struct {
	requests, spans atomic.Int64
}

// export counts the spans of one ExportTraceServiceRequest. It walks the
// protobuf wire format instead of decoding the request into Go structs: the
// receiver shares the benchmark's cores with the proxies it measures, and a
// full decode cost about 10 µs of CPU per span there, a third of a core at
// hoptrace's traced maximum (docs/benchmarks.md). A request that is not
// well-formed protobuf is refused, as a collector would.
func (s *sink) export(req []byte) error {
	n, err := countSpans(req)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "malformed export: %v", err)
	}
	s.requests.Add(1)
	s.spans.Add(int64(n))
	return nil
}

// countSpans counts ExportTraceServiceRequest.resource_spans(1)
// .scope_spans(2).spans(2).
func countSpans(b []byte) (int, error) {
	n := 0
	err := eachField(b, 1, func(rs []byte) error {
		return eachField(rs, 2, func(ss []byte) error {
			return eachField(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

// eachField calls f with every length-delimited field numbered num of the
// message b, and checks that the rest of b is well-formed.
func eachField(b []byte, num protowire.Number, f func([]byte) error) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return protowire.ParseError(l)
			}
			if err := f(v); err != nil {
				return err
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
	}
	return nil
}

// rawMessage is a gRPC message kept as its bytes (rawCodec).
type rawMessage []byte

// rawCodec stands in for gRPC's proto codec: rawMessages pass as they are,
// anything else is protobuf.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(*rawMessage); ok {
		return *m, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	if m, ok := v.(*rawMessage); ok {
		*m = append((*m)[:0], data...)
		return nil
	}
	return proto.Unmarshal(data, v.(proto.Message))
}

// traceService is the OTLP trace service with its one method taking raw bytes.
var traceService = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler: func(srv any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var req rawMessage
			if err := dec(&req); err != nil {
				return nil, err
			}
			if err := srv.(*sink).export(req); err != nil {
				return nil, err
			}
			return &rawMessage{}, nil // an empty ExportTraceServiceResponse
		},
	}},
}

func main() {
	var namespaces []string
	flag.Func("netns", "also listen on -pod-addr inside this network namespace (repeatable)", func(v string) error {
		namespaces = append(namespaces, v)
		return nil
	})
	podAddr := flag.String("pod-addr", "127.0.0.1:4317", "OTLP address inside each -netns")
	procs := flag.Int("procs", 1, "Go Ps (GOMAXPROCS) to run on; 0 leaves the runtime's choice")
	flag.Parse()
	// The receiver stands for a collector that would run elsewhere, but here
	// it shares the two cores with what it measures, so it should take as
	// little of them as it can. On one P grpc-go's hand-offs between its
	// reader, writer and handler goroutines stop waking a second thread each:
	// at http-max 7.3–8.7 µs of CPU per traced request on two Ps, 4.4–6.0 on
	// one (docs/benchmarks.md, "The receiver on one P").
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	log.SetPrefix("otlpsink: ")
	log.SetFlags(0)
	if err := run(namespaces, *podAddr); err != nil {
		log.Fatal(err)
	}
}

func run(namespaces []string, podAddr string) error {
	s := &sink{}
	encoding.RegisterCodec(rawCodec{})
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	srv.RegisterService(&traceService, s)

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
