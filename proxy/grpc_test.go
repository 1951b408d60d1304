package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hoptrace/hoptrace/spans"
)

// echoService is a gRPC service declared by hand, so the test needs no
// generated code: a unary echo and a bidirectional streaming echo.
var echoService = grpc.ServiceDesc{
	ServiceName: "hoptrace.test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if in.Value == "fail" {
				return nil, status.Error(codes.NotFound, "no such thing")
			}
			md, _ := metadata.FromIncomingContext(ctx)
			return wrapperspb.String("echo: " + in.Value + " traceparent=" + strings.Join(md.Get("traceparent"), ",")), nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			for {
				in := new(wrapperspb.BytesValue)
				if err := stream.RecvMsg(in); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := stream.SendMsg(in); err != nil {
					return err
				}
			}
		},
	}},
}

func grpcApp(t *testing.T) netip.AddrPort {
	t.Helper()
	s := grpc.NewServer()
	s.RegisterService(&echoService, struct{}{})
	ln := listen(t)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return mustAddrPort(t, ln.Addr())
}

// grpcClient connects a real gRPC client to the chain's outbound proxy.
func (c *chain) grpcClient(t *testing.T) *grpc.ClientConn {
	t.Helper()
	addr := c.outLn.Addr().String()
	cc, err := grpc.NewClient("passthrough:///svc-b.test:9090",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20), grpc.MaxCallSendMsgSize(8<<20)),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Item 3: gRPC unary through both proxies, traced with the RPC conventions.
func TestGRPCUnary(t *testing.T) {
	c := newChain(t, grpcApp(t))
	cc := c.grpcClient(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+incomingTrace+"-"+incomingSpan+"-01")
	out := new(wrapperspb.StringValue)
	if err := cc.Invoke(ctx, "/hoptrace.test.Echo/Unary", wrapperspb.String("hi"), out); err != nil {
		t.Fatal(err)
	}
	legs := checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
	want := "echo: hi traceparent=00-" + incomingTrace + "-" + legs["inbound-client"].SpanID.String() + "-01"
	if out.Value != want {
		t.Errorf("got %q, want %q", out.Value, want)
	}
	for leg, s := range legs {
		for k, v := range map[string]string{
			"rpc.system":               "grpc",
			"rpc.service":              "hoptrace.test.Echo",
			"rpc.method":               "Unary",
			"rpc.grpc.status_code":     "0",
			"network.protocol.version": "2",
			"url.path":                 map[bool]string{true: "/hoptrace.test.Echo/Unary", false: ""}[strings.HasSuffix(leg, "server")],
		} {
			if got := attr(s, k); got != v {
				t.Errorf("%s: %s = %q, want %q", leg, k, got, v)
			}
		}
		if s.Name != "hoptrace.test.Echo/Unary" || s.Status != spans.StatusUnset {
			t.Errorf("%s: name %q status %d", leg, s.Name, s.Status)
		}
	}
	if f := c.out.Flows(); len(f) != 1 || f[0].Protocol != ProtocolGRPC {
		t.Errorf("outbound flows %+v", f)
	}

	// A failed call: its status comes back, and every leg is an error.
	c.rec.reset()
	err := cc.Invoke(ctx, "/hoptrace.test.Echo/Unary", wrapperspb.String("fail"), out)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("got %v, want NotFound", err)
	}
	for leg, s := range byLeg(t, c.rec.wait(t, 4)) {
		if attr(s, "rpc.grpc.status_code") != "5" || s.Status != spans.StatusError {
			t.Errorf("%s: grpc status %q, span status %d", leg, attr(s, "rpc.grpc.status_code"), s.Status)
		}
	}
}

// Item 3: bidirectional streaming, message by message, with messages larger
// than HTTP/2's flow-control windows.
func TestGRPCBidiStreaming(t *testing.T) {
	c := newChain(t, grpcApp(t))
	cc := c.grpcClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+incomingTrace+"-"+incomingSpan+"-01")
	stream, err := cc.NewStream(ctx, &echoService.Streams[0], "/hoptrace.test.Echo/Chat")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		size := 10 + i
		if i%10 == 9 {
			size = 3 << 20 // beyond the 64 KiB default windows
		}
		msg := []byte(strings.Repeat(string(rune('a'+i%26)), size))
		if err := stream.SendMsg(wrapperspb.Bytes(msg)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		// The reply must come before the next message goes: nothing may wait for
		// the end of the stream.
		got := new(wrapperspb.BytesValue)
		if err := stream.RecvMsg(got); err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if string(got.Value) != string(msg) {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(got.Value), len(msg))
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(new(wrapperspb.BytesValue)); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	for leg, s := range checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan) {
		if attr(s, "rpc.method") != "Chat" || attr(s, "rpc.grpc.status_code") != "0" {
			t.Errorf("%s: method %q status %q", leg, attr(s, "rpc.method"), attr(s, "rpc.grpc.status_code"))
		}
	}
}

// A gRPC call whose upstream is down fails fast with UNAVAILABLE, and the spans
// say so.
func TestGRPCUpstreamUnavailable(t *testing.T) {
	dead := listen(t)
	deadAddr := mustAddrPort(t, dead.Addr())
	dead.Close()
	c := newChain(t, deadAddr)
	cc := c.grpcClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+incomingTrace+"-"+incomingSpan+"-01")
	err := cc.Invoke(ctx, "/hoptrace.test.Echo/Unary", wrapperspb.String("hi"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the call hung until its deadline")
	}
	legs := byLeg(t, c.rec.wait(t, 4))
	ic := legs["inbound-client"]
	if ic.Status != spans.StatusError || attr(ic, "error.type") != "connect" {
		t.Errorf("inbound-client: status %d error.type %q", ic.Status, attr(ic, "error.type"))
	}
	for _, leg := range []string{"inbound-server", "outbound-server", "outbound-client"} {
		if s := legs[leg]; s.Status != spans.StatusError || attr(s, "rpc.grpc.status_code") != "14" {
			t.Errorf("%s: status %d grpc %q", leg, s.Status, attr(s, "rpc.grpc.status_code"))
		}
	}
}
