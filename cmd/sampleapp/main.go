// Command sampleapp is the demo and test workload: a tiny hello → world → emoji
// application like the ones in Linkerd's tracing walkthroughs. It has no tracing
// library; like any app in a mesh, it only forwards the trace headers it receives.
//
//	sampleapp hello  --listen :8080 --world http://WORLD:8080
//	sampleapp world  --listen :8080 --emoji EMOJI:9090
//	sampleapp emoji  --listen :9090
//	sampleapp client --target http://HELLO:8080/ --interval 1s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// traceHeaders are the headers an app forwards so hops join one trace.
var traceHeaders = []string{"traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags"}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sampleapp hello|world|emoji|client [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", ":8080", "address to serve on")
	var err error
	switch os.Args[1] {
	case "hello":
		world := fs.String("world", "http://world:8080", "world's base URL")
		fs.Parse(os.Args[2:])
		err = serveHTTP(ctx, *listen, helloHandler(*world))
	case "world":
		emoji := fs.String("emoji", "emoji:9090", "emoji's gRPC address")
		fs.Parse(os.Args[2:])
		err = serveWorld(ctx, *listen, *emoji)
	case "emoji":
		fs.Parse(os.Args[2:])
		err = serveEmoji(ctx, *listen)
	case "client":
		target := fs.String("target", "http://hello:8080/", "URL to call")
		interval := fs.Duration("interval", time.Second, "time between requests")
		count := fs.Int("count", 0, "stop after this many requests (0: until stopped)")
		fs.Parse(os.Args[2:])
		err = runClient(ctx, *target, *interval, *count)
	default:
		err = fmt.Errorf("unknown role %q: want hello, world, emoji or client", os.Args[1])
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

func serveHTTP(ctx context.Context, addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	log.Printf("listening on %s", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func forward(from http.Header, to http.Header) {
	for _, h := range traceHeaders {
		if v := from.Values(h); len(v) > 0 {
			to[http.CanonicalHeaderKey(h)] = v
		}
	}
}

func helloHandler(world string) http.Handler {
	client := &http.Client{Timeout: 5 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			fmt.Fprintln(w, "ok")
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, strings.TrimSuffix(world, "/")+"/world", nil)
		forward(r.Header, req.Header)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, "world: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			http.Error(w, "world: "+resp.Status, http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "hello %s", body)
	})
}

const emojiMethod = "/hoptrace.demo.Emoji/Random"

func serveWorld(ctx context.Context, addr, emojiAddr string) error {
	cc, err := grpc.NewClient(emojiAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("emoji client: %w", err)
	}
	defer cc.Close()
	return serveHTTP(ctx, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		md := metadata.MD{}
		for _, h := range traceHeaders {
			if v := r.Header.Values(h); len(v) > 0 {
				md[h] = v
			}
		}
		callCtx, cancel := context.WithTimeout(metadata.NewOutgoingContext(r.Context(), md), 5*time.Second)
		defer cancel()
		out := new(wrapperspb.StringValue)
		if err := cc.Invoke(callCtx, emojiMethod, wrapperspb.String("world"), out); err != nil {
			http.Error(w, "emoji: "+err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "world %s\n", out.GetValue())
	}))
}

var emojis = []string{"🌍", "🌎", "🌏", "✨", "🚀", "🛰️"}

// emojiService is a one-method gRPC service written out by hand (what
// protoc-gen-go-grpc would generate), with well-known protobuf messages.
type emojiService interface {
	Random(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

type emojiServer struct{}

func (emojiServer) Random(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if in.GetValue() == "fail" {
		return nil, status.Error(codes.FailedPrecondition, "asked to fail")
	}
	return wrapperspb.String(emojis[rand.IntN(len(emojis))]), nil
}

var emojiDesc = grpc.ServiceDesc{
	ServiceName: "hoptrace.demo.Emoji",
	HandlerType: (*emojiService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Random",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(emojiService).Random(ctx, in)
		},
	}},
	Metadata: "hoptrace/demo/emoji.proto",
}

func serveEmoji(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	s.RegisterService(&emojiDesc, emojiServer{})
	go func() { <-ctx.Done(); s.GracefulStop() }()
	log.Printf("gRPC listening on %s", addr)
	return s.Serve(ln)
}

func runClient(ctx context.Context, target string, interval time.Duration, count int) error {
	client := &http.Client{Timeout: 10 * time.Second}
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; count == 0 || i < count; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Printf("request %d: %v", i+1, err)
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			log.Printf("request %d: %s %s", i+1, resp.Status, strings.TrimSpace(string(body)))
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}
