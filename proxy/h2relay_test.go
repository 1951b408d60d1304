package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hoptrace/hoptrace/spans"
)

// h2Peer is one end of a raw HTTP/2 connection, for saying what real clients and
// servers never would.
type h2Peer struct {
	t      testing.TB
	conn   net.Conn
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
}

func newH2Peer(t testing.TB, c net.Conn) *h2Peer {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p := &h2Peer{t: t, conn: c, fr: http2.NewFramer(c, c)}
	p.fr.AllowIllegalWrites = true
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.enc = hpack.NewEncoder(&p.encBuf)
	return p
}

// dialH2 connects a raw client, exchanges settings (extra ones as given) and
// returns once the server's SETTINGS arrived.
func dialH2(t testing.TB, addr string, settings ...http2.Setting) *h2Peer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := newH2Peer(t, c)
	io.WriteString(c, h2Preface)
	p.fr.WriteSettings(settings...)
	f, err := p.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	p.fr.WriteSettingsAck()
	return p
}

// acceptH2 serves the server side of a raw connection: preface and SETTINGS.
func acceptH2(t testing.TB, c net.Conn, settings ...http2.Setting) (*h2Peer, error) {
	p := newH2Peer(t, c)
	pre := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(c, pre); err != nil || string(pre) != h2Preface {
		return nil, errors.New("no preface")
	}
	return p, p.fr.WriteSettings(settings...)
}

// block encodes fields, name and value pairs.
func (p *h2Peer) block(fields ...string) []byte {
	p.encBuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		p.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), p.encBuf.Bytes()...)
}

// headers writes a header block, in frames of the initial maximum size as a
// client that heeds SETTINGS_MAX_FRAME_SIZE would.
func (p *h2Peer) headers(stream uint32, end bool, fields ...string) {
	p.t.Helper()
	block := p.block(fields...)
	n := min(len(block), h2MinFrameSize)
	err := p.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: stream, BlockFragment: block[:n], EndStream: end, EndHeaders: n == len(block),
	})
	for block = block[n:]; err == nil && len(block) > 0; block = block[n:] {
		n = min(len(block), h2MinFrameSize)
		err = p.fr.WriteContinuation(stream, n == len(block), block[:n])
	}
	if err != nil {
		p.t.Fatal(err)
	}
}

func (p *h2Peer) get(stream uint32, path string, more ...string) {
	p.t.Helper()
	p.headers(stream, true, append([]string{":method", "GET", ":scheme", "http", ":authority", "svc-b.test", ":path", path}, more...)...)
}

// next reads the next frame that is not connection housekeeping (SETTINGS,
// PING, WINDOW_UPDATE), answering what needs an answer.
func (p *h2Peer) next() (http2.Frame, error) {
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				p.fr.WriteSettingsAck()
			}
			continue
		case *http2.PingFrame:
			if !f.IsAck() {
				p.fr.WritePing(true, f.Data)
			}
			continue
		case *http2.WindowUpdateFrame:
			continue
		}
		return f, nil
	}
}

// response reads one whole response on stream: status, body, and the frame that
// ended it.
func (p *h2Peer) response(stream uint32) (status string, body []byte, end http2.Frame) {
	p.t.Helper()
	for {
		f, err := p.next()
		if err != nil {
			p.t.Fatalf("reading stream %d: %v", stream, err)
		}
		if f.Header().StreamID != stream {
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" {
				status = s
			}
			if f.StreamEnded() {
				return status, body, f
			}
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			if len(f.Data()) > 0 {
				p.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				p.fr.WriteWindowUpdate(stream, uint32(len(f.Data())))
			}
			if f.StreamEnded() {
				return status, body, f
			}
		case *http2.RSTStreamFrame:
			return status, body, f
		case *http2.GoAwayFrame:
			p.t.Fatalf("GOAWAY %v waiting for stream %d", f.ErrCode, stream)
		}
	}
}

// goAway reads until a GOAWAY, then until the connection ends.
func (p *h2Peer) goAway() *http2.GoAwayFrame {
	p.t.Helper()
	var ga *http2.GoAwayFrame
	for ga == nil {
		f, err := p.next()
		if err != nil {
			p.t.Fatalf("no GOAWAY: %v", err)
		}
		ga, _ = f.(*http2.GoAwayFrame)
	}
	// Copy what the framer reuses.
	ga = &http2.GoAwayFrame{LastStreamID: ga.LastStreamID, ErrCode: ga.ErrCode}
	for {
		if _, err := p.fr.ReadFrame(); err != nil {
			if !errors.Is(err, io.EOF) && !isReset(err) {
				p.t.Errorf("after GOAWAY: %v, want the connection closed", err)
			}
			return ga
		}
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func countedGRPCApp(t *testing.T, opts ...grpc.ServerOption) (netip.AddrPort, *countingListener, *grpc.Server) {
	t.Helper()
	s := grpc.NewServer(opts...)
	s.RegisterService(&echoService, struct{}{})
	ln := &countingListener{Listener: listen(t)}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return mustAddrPort(t, ln.Addr()), ln, s
}

// checkEvents checks that a span's events lie within it, in order.
func checkEvents(t *testing.T, leg string, s *spans.Span, want ...string) {
	t.Helper()
	var got []string
	for i, e := range s.Events {
		got = append(got, e.Name)
		if e.Time.Before(s.Start) || e.Time.After(s.End) || i > 0 && e.Time.Before(s.Events[i-1].Time) {
			t.Errorf("%s: event %s at %v outside [%v, %v] or out of order", leg, e.Name, e.Time, s.Start, s.End)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s: events %v, want %v", leg, got, want)
	}
}

// checkHopNesting checks that the inbound proxy's legs lie within the outbound
// client leg that called it.
func checkHopNesting(t *testing.T, legs map[string]*spans.Span) {
	t.Helper()
	oc, is := legs["outbound-client"], legs["inbound-server"]
	if is.Start.Before(oc.Start) || is.End.After(oc.End) {
		t.Errorf("inbound-server [%v, %v] outside outbound-client [%v, %v]", is.Start, is.End, oc.Start, oc.End)
	}
}

// gRPC through the relay: one upstream connection per client connection, and
// four spans per call nested in time, with their events.
func TestH2RelayGRPCSpans(t *testing.T) {
	appAddr, appLn, _ := countedGRPCApp(t)
	c := newChain(t, appAddr)
	cc := c.grpcClient(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", sampledHeader)

	out := new(wrapperspb.StringValue)
	if err := cc.Invoke(ctx, "/hoptrace.test.Echo/Unary", wrapperspb.String("hi"), out); err != nil {
		t.Fatal(err)
	}
	legs := checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
	checkHopNesting(t, legs)
	for leg, s := range legs {
		if strings.HasSuffix(leg, "-server") {
			checkEvents(t, leg, s, "response.first_byte")
		} else {
			checkEvents(t, leg, s, "wire.send", "response.first_byte")
		}
		if attr(s, "http.response.status_code") != "200" || attr(s, "rpc.grpc.status_code") != "0" {
			t.Errorf("%s: status %q grpc %q", leg, attr(s, "http.response.status_code"), attr(s, "rpc.grpc.status_code"))
		}
	}

	// Streaming: the legs span the whole call.
	c.rec.reset()
	stream, err := cc.NewStream(ctx, &echoService.Streams[0], "/hoptrace.test.Echo/Chat")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := stream.SendMsg(wrapperspb.Bytes([]byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
		if err := stream.RecvMsg(new(wrapperspb.BytesValue)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stream.CloseSend()
	if err := stream.RecvMsg(new(wrapperspb.BytesValue)); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	legs = checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
	checkHopNesting(t, legs)
	for leg, s := range legs {
		if d := s.End.Sub(s.Start); d < 15*time.Millisecond {
			t.Errorf("%s lasted %v, less than the call", leg, d)
		}
		if attr(s, "rpc.method") != "Chat" {
			t.Errorf("%s: method %q", leg, attr(s, "rpc.method"))
		}
	}
	if n := appLn.n.Load(); n != 1 {
		t.Errorf("the app got %d connections, want 1", n)
	}
	if f := c.in.Flows(); len(f) != 1 || f[0].Requests != 2 {
		t.Errorf("inbound flows %+v", f)
	}
}

// Many concurrent streams share one connection end to end.
func TestH2RelayConcurrentStreams(t *testing.T) {
	appAddr, appLn, _ := countedGRPCApp(t)
	c := newChain(t, appAddr)
	cc := c.grpcClient(t)
	const workers, calls = 100, 5
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range calls {
				tp := "00-" + incomingTrace + "-" + incomingSpan + "-01"
				if i%2 == 1 {
					tp = tp[:len(tp)-1] + "0"
				}
				ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", tp)
				want := itoa64(int64(w*calls + i))
				out := new(wrapperspb.StringValue)
				if err := cc.Invoke(ctx, "/hoptrace.test.Echo/Unary", wrapperspb.String(want), out); err != nil {
					errs <- err
					return
				}
				if !strings.HasPrefix(out.Value, "echo: "+want+" ") {
					errs <- errors.New("crossed streams: got " + out.Value + " for " + want)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Calls with an odd index were unsampled.
	ss := c.rec.wait(t, 4*workers*(calls+1)/2)
	for _, s := range ss {
		if s.Status != spans.StatusUnset || attr(s, "rpc.grpc.status_code") != "0" {
			t.Errorf("%s: status %d", attr(s, "hoptrace.leg"), s.Status)
		}
	}
	if n := appLn.n.Load(); n != 1 {
		t.Errorf("the app got %d connections, want 1", n)
	}
	reqs, _ := c.inObs.snapshot()
	if len(reqs) != workers*calls {
		t.Errorf("inbound observed %d requests, want %d", len(reqs), workers*calls)
	}
}

// Bodies far larger than the flow-control windows, both ways.
func TestH2RelayLargeBodies(t *testing.T) {
	addr := h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		io.Copy(h, r.Body)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", h.Sum(nil)))
		// And as much back.
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for range 32 << 20 / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	c := newChain(t, addr.AddrPort())
	body := bytes.Repeat([]byte("hoptrace"), 32<<20/8)
	req, _ := http.NewRequest(http.MethodPost, "http://svc-b.test/upload", bytes.NewReader(body))
	req.Header.Set("Traceparent", sampledHeader)
	resp, err := c.h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 32<<20 {
		t.Fatalf("read %d bytes back: %v", n, err)
	}
	sum := sha256.Sum256(body)
	if resp.Header.Get("X-Sum") != fmt.Sprintf("%x", sum) {
		t.Error("the upload arrived changed")
	}
	checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
}

// Flow control is end to end: a client that grants no window beyond the initial
// 64 KiB holds the upstream's writes back, through both proxies. (A terminating
// proxy would have read megabytes on its own windows.)
func TestH2RelayFlowControlEndToEnd(t *testing.T) {
	var written atomic.Int64
	addr := h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 16<<10)
		for range 4 << 20 / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	c := newChain(t, addr.AddrPort())
	p := dialH2(t, c.outLn.Addr().String())
	p.get(1, "/big")
	got := 0
	for got < 65535 {
		f, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := f.(*http2.DataFrame); ok {
			got += len(d.Data())
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := written.Load(); n > 512<<10 {
		t.Fatalf("the app wrote %d bytes to a client that had granted 64 KiB", n)
	}
	p.fr.WriteWindowUpdate(0, 8<<20)
	p.fr.WriteWindowUpdate(1, 8<<20)
	for got < 4<<20 {
		f, err := p.next()
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		if d, ok := f.(*http2.DataFrame); ok {
			got += len(d.Data())
		}
	}
}

// A client reset mid-stream reaches the app, and the spans say who gave up.
func TestH2RelayClientReset(t *testing.T) {
	canceled := make(chan struct{})
	desc := grpc.ServiceDesc{
		ServiceName: "hoptrace.test.Hold",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName: "Hold", ServerStreams: true, ClientStreams: true,
			Handler: func(_ any, stream grpc.ServerStream) error {
				stream.SendMsg(wrapperspb.String("first"))
				<-stream.Context().Done()
				close(canceled)
				return stream.Context().Err()
			},
		}},
	}
	s := grpc.NewServer()
	s.RegisterService(&desc, struct{}{})
	ln := listen(t)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	c := newChain(t, mustAddrPort(t, ln.Addr()))
	cc := c.grpcClient(t)
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "traceparent", sampledHeader))
	stream, err := cc.NewStream(ctx, &desc.Streams[0], "/hoptrace.test.Hold/Hold")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the app never saw the reset")
	}
	legs := byLeg(t, c.rec.wait(t, 4))
	for _, leg := range []string{"outbound-client", "inbound-client"} {
		if s := legs[leg]; attr(s, "error.type") != "client" || s.Status != spans.StatusError {
			t.Errorf("%s: error.type %q status %d", leg, attr(s, "error.type"), s.Status)
		}
	}
	// The connection lives on.
	if err := cc.Invoke(context.Background(), "/hoptrace.test.Hold/Missing", wrapperspb.String("x"), new(wrapperspb.StringValue)); status.Code(err) != codes.Unimplemented {
		t.Errorf("next call: %v", err)
	}
}

// An upstream dying mid-stream: gRPC calls that had their response headers end
// with UNAVAILABLE, HTTP calls that had not get a 502, and partial HTTP
// responses a reset.
func TestH2RelayUpstreamDies(t *testing.T) {
	t.Run("grpc", func(t *testing.T) {
		sent, hold := make(chan struct{}), make(chan struct{})
		defer close(hold)
		desc := grpc.ServiceDesc{
			ServiceName: "hoptrace.test.Die",
			HandlerType: (*any)(nil),
			Streams: []grpc.StreamDesc{{
				StreamName: "Die", ServerStreams: true, ClientStreams: true,
				Handler: func(_ any, stream grpc.ServerStream) error {
					stream.SendMsg(wrapperspb.String("first"))
					close(sent)
					<-hold // never ends the call itself
					return nil
				},
			}},
		}
		s := grpc.NewServer()
		s.RegisterService(&desc, struct{}{})
		ln := listen(t)
		go s.Serve(ln)
		t.Cleanup(s.Stop)
		c := newChain(t, mustAddrPort(t, ln.Addr()))
		ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", sampledHeader)
		stream, err := c.grpcClient(t).NewStream(ctx, &desc.Streams[0], "/hoptrace.test.Die/Die")
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatal(err)
		}
		<-sent
		s.Stop() // closes its connections, mid-stream
		err = stream.RecvMsg(new(wrapperspb.StringValue))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
		legs := byLeg(t, c.rec.wait(t, 4))
		if ic := legs["inbound-client"]; attr(ic, "error.type") != "upstream" || ic.Status != spans.StatusError {
			t.Errorf("inbound-client: error.type %q status %d", attr(ic, "error.type"), ic.Status)
		}
		for _, leg := range []string{"inbound-server", "outbound-client", "outbound-server"} {
			if s := legs[leg]; attr(s, "rpc.grpc.status_code") != "14" || s.Status != spans.StatusError {
				t.Errorf("%s: grpc status %q span status %d", leg, attr(s, "rpc.grpc.status_code"), s.Status)
			}
		}
	})
	t.Run("http", func(t *testing.T) {
		appAddr := rawH2App(t, func(p *h2Peer) {
			for {
				f, err := p.next()
				if err != nil {
					return
				}
				hf, ok := f.(*http2.MetaHeadersFrame)
				if !ok {
					continue
				}
				if hf.PseudoValue("path") == "/partial" {
					p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: hf.StreamID, BlockFragment: p.block(":status", "200"), EndHeaders: true})
					p.fr.WriteData(hf.StreamID, false, []byte("part of it"))
				}
				p.conn.Close()
				return
			}
		})
		c := newChain(t, appAddr)
		client := c.h2cClient()
		req, _ := http.NewRequest(http.MethodGet, "http://svc-b.test/none", nil)
		req.Header.Set("Traceparent", sampledHeader)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status %d, want 502", resp.StatusCode)
		}
		if ic := byLeg(t, c.rec.wait(t, 4))["inbound-client"]; attr(ic, "error.type") != "upstream" {
			t.Errorf("inbound-client: error.type %q", attr(ic, "error.type"))
		}

		resp, err = client.Get("http://svc-b.test/partial")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("a truncated body %q read as complete", b)
		}
	})
}

// rawH2App serves each connection with serve, after the preface and settings.
func rawH2App(t *testing.T, serve func(*h2Peer), settings ...http2.Setting) netip.AddrPort {
	t.Helper()
	return tcpApp(t, func(c net.Conn) {
		if p, err := acceptH2(t, c, settings...); err == nil {
			serve(p)
		}
	})
}

// A header block that fits one frame from the client but not once the trace
// context is added goes upstream as HEADERS and CONTINUATION.
func TestH2RelayContinuation(t *testing.T) {
	type seen struct {
		frames []string
		fields map[string]string
	}
	got := make(chan seen, 1)
	appAddr := rawH2App(t, func(p *h2Peer) {
		p.fr.ReadMetaHeaders = nil // see the frames as they are
		dec := hpack.NewDecoder(4096, nil)
		var s seen
		var block []byte
		for {
			f, err := p.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					p.fr.WriteSettingsAck()
				}
				continue
			case *http2.HeadersFrame:
				s.frames = append(s.frames, "HEADERS")
				block = append(block, f.HeaderBlockFragment()...)
				if !f.HeadersEnded() {
					continue
				}
			case *http2.ContinuationFrame:
				s.frames = append(s.frames, "CONTINUATION")
				block = append(block, f.HeaderBlockFragment()...)
				if !f.HeadersEnded() {
					continue
				}
			default:
				continue
			}
			fields, err := dec.DecodeFull(block)
			if err != nil {
				t.Error(err)
				return
			}
			s.fields = map[string]string{}
			for _, f := range fields {
				s.fields[f.Name] = f.Value
			}
			got <- s
			p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.Header().StreamID, BlockFragment: p.block(":status", "200"), EndHeaders: true, EndStream: true})
		}
	})
	p, err := New(Config{Direction: Outbound, Resolver: fixedResolver(appAddr), Sampler: spans.NewSampler(0), Recorder: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	client := dialH2(t, start(t, p).Addr().String())
	// The largest value whose block still fits one frame.
	pseudo := []string{":method", "GET", ":scheme", "http", ":authority", "svc-b.test", ":path", "/"}
	size := func(n int) int {
		var b bytes.Buffer
		enc := hpack.NewEncoder(&b)
		fields := append(pseudo, "x-big", strings.Repeat("a", n))
		for i := 0; i < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return b.Len()
	}
	n := 16384 * 8 / 5 // 'a' is 5 bits in HPACK's Huffman code
	for size(n) > 16384 {
		n -= 10
	}
	if size(n) < 16384-64 {
		t.Fatalf("a block of %d bytes leaves room for the trace context", size(n))
	}
	big := strings.Repeat("a", n)
	client.get(1, "/", "x-big", big)
	if st, _, _ := client.response(1); st != "200" {
		t.Fatalf("status %q", st)
	}
	s := <-got
	if strings.Join(s.frames, ",") != "HEADERS,CONTINUATION" {
		t.Errorf("upstream got %v", s.frames)
	}
	if s.fields["x-big"] != big || len(s.fields["traceparent"]) != 55 || s.fields[":path"] != "/" {
		t.Errorf("upstream got x-big of %d bytes, traceparent %q", len(s.fields["x-big"]), s.fields["traceparent"])
	}
}

// Broken input from a client ends its connection with a GOAWAY naming the
// error; the proxy serves the next one.
func TestH2RelayBadFrames(t *testing.T) {
	addr := h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := newChain(t, addr.AddrPort())
	for _, tc := range []struct {
		name string
		send func(p *h2Peer)
		code http2.ErrCode
	}{
		{"continuation alone", func(p *h2Peer) { p.fr.WriteContinuation(1, true, []byte{0x82}) }, http2.ErrCodeProtocol},
		{"hpack garbage", func(p *h2Peer) {
			p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, EndHeaders: true})
		}, http2.ErrCodeCompression},
		{"bad index", func(p *h2Peer) {
			p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xbf}, EndHeaders: true})
		}, http2.ErrCodeCompression},
		// The app allows 1 MiB frames.
		{"frame too large", func(p *h2Peer) { p.fr.WriteData(1, true, make([]byte, 2<<20)) }, http2.ErrCodeFrameSize},
		{"settings length", func(p *h2Peer) { p.fr.WriteRawFrame(http2.FrameSettings, 0, 0, []byte{0, 1, 0, 0, 0}) }, http2.ErrCodeFrameSize},
		{"headers on stream 0", func(p *h2Peer) { p.headers(0, true, ":method", "GET") }, http2.ErrCodeProtocol},
		{"even stream", func(p *h2Peer) { p.get(2, "/") }, http2.ErrCodeProtocol},
		{"push promise", func(p *h2Peer) {
			p.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: p.block(":method", "GET"), EndHeaders: true})
		}, http2.ErrCodeProtocol},
		{"interrupted block", func(p *h2Peer) {
			p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: p.block(":method", "GET")})
			p.fr.WritePing(false, [8]byte{})
		}, http2.ErrCodeProtocol},
		{"bad padding", func(p *h2Peer) {
			p.fr.WriteRawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndHeaders, 1, []byte{9, 0x82})
		}, http2.ErrCodeProtocol},
		{"rst length", func(p *h2Peer) { p.fr.WriteRawFrame(http2.FrameRSTStream, 0, 1, []byte{0, 0, 0}) }, http2.ErrCodeFrameSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dialH2(t, c.outLn.Addr().String())
			tc.send(p)
			if ga := p.goAway(); ga.ErrCode != tc.code {
				t.Errorf("GOAWAY %v, want %v", ga.ErrCode, tc.code)
			}
		})
	}
	// Stream errors: the connection and its HPACK state live on.
	p := dialH2(t, c.outLn.Addr().String())
	// A header list beyond the limit in a small block: after the first, the
	// fields are indexed (a client sending a larger block in many frames is
	// cut off earlier, with a GOAWAY, as x/net's server does).
	var many []string
	for range 80 {
		many = append(many, "x-filler", strings.Repeat("v", 1000))
	}
	p.get(1, "/", many...)
	if st, _, _ := p.response(1); st != "431" {
		t.Errorf("oversized headers: status %q, want 431", st)
	}
	p.get(3, "/", "X-Upper", "1")
	if _, _, f := p.response(3); f.Header().Type != http2.FrameRSTStream || f.(*http2.RSTStreamFrame).ErrCode != http2.ErrCodeProtocol {
		t.Errorf("invalid field name: %v, want RST_STREAM PROTOCOL_ERROR", f)
	}
	p.headers(5, true, ":method", "GET", ":scheme", "http", "x-a", "1", ":path", "/")
	if _, _, f := p.response(5); f.Header().Type != http2.FrameRSTStream {
		t.Errorf("pseudo-header after a field: %v, want RST_STREAM", f)
	}
	p.get(7, "/after")
	if st, body, _ := p.response(7); st != "200" || string(body) != "ok" {
		t.Errorf("next request: %q %q", st, body)
	}
}

// An upstream that does not speak HTTP/2: 502, or UNAVAILABLE for gRPC.
func TestH2RelayUpstreamNotHTTP2(t *testing.T) {
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := newChain(t, appAddr)
	resp, err := c.h2cClient().Get("http://svc-b.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	err = c.grpcClient(t).Invoke(context.Background(), "/hoptrace.test.Echo/Unary", wrapperspb.String("hi"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC: %v, want Unavailable", err)
	}
}

// Shutdown tells relayed clients to go away, lets their streams finish, and
// returns once the connections are gone.
func TestH2RelayShutdown(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	addr := h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "done")
	}))
	c := newChain(t, addr.AddrPort())
	p := dialH2(t, c.outLn.Addr().String())
	p.get(1, "/fast")
	if st, body, _ := p.response(1); st != "200" || string(body) != "done" {
		t.Fatalf("%q %q", st, body)
	}
	p.get(3, "/slow")
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- c.out.Shutdown(ctx)
	}()
	var ga *http2.GoAwayFrame
	for ga == nil {
		f, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		ga, _ = f.(*http2.GoAwayFrame)
	}
	if ga.LastStreamID != 3 || ga.ErrCode != http2.ErrCodeNo {
		t.Errorf("GOAWAY last %d code %v, want 3 NO_ERROR", ga.LastStreamID, ga.ErrCode)
	}
	// A stream opened after the GOAWAY is not processed.
	p.get(5, "/fast")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a stream open", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if st, body, _ := p.response(3); st != "200" || string(body) != "done" {
		t.Errorf("in-flight stream: %q %q", st, body)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	reqs, _ := c.inObs.snapshot()
	if len(reqs) != 2 {
		t.Errorf("the inbound proxy saw %d requests, want 2 (stream 5 was not processed)", len(reqs))
	}
}

// A connection with no stream for the idle timeout is closed with a GOAWAY.
func TestH2RelayIdleTimeout(t *testing.T) {
	addr := h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c := newChain(t, addr.AddrPort(), func(d Direction, cfg *Config) {
		if d == Outbound {
			cfg.IdleTimeout = 100 * time.Millisecond
		}
	})
	p := dialH2(t, c.outLn.Addr().String())
	p.get(1, "/")
	p.response(1)
	start := time.Now()
	if ga := p.goAway(); ga.LastStreamID != 1 || ga.ErrCode != http2.ErrCodeNo {
		t.Errorf("GOAWAY %d %v", ga.LastStreamID, ga.ErrCode)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
}

// The override header never reaches the app, captured headers are recorded from
// requests, responses and trailers, and SkipTrace requests are not traced.
func TestH2RelayHeaders(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	addr := h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Trailer", "X-Done")
		w.Header().Set("X-Reply", "r1")
		io.WriteString(w, "ok")
		w.Header().Set("X-Done", "yes")
	}))
	c := newChain(t, addr.AddrPort(), func(_ Direction, cfg *Config) {
		cfg.CaptureHeaders = []string{"X-Request-Id", "x-reply", "X-Done"}
		cfg.SkipTrace = func(r RequestInfo) bool { return strings.HasPrefix(r.UserAgent, "kube-probe/") }
	})
	client := c.h2cClient()
	resp := get(t, client, "http://svc-b.test/x", map[string]string{
		"Traceparent": "00-" + incomingTrace + "-" + incomingSpan + "-00", spans.OverrideHeader: "1",
		"X-Request-Id": "rid-7",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	legs := checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
	mu.Lock()
	h := seen
	mu.Unlock()
	if _, ok := h[spans.OverrideHeader]; ok {
		t.Error("the override header reached the app")
	}
	if want := "00-" + incomingTrace + "-" + legs["inbound-client"].SpanID.String() + "-01"; h.Get("Traceparent") != want {
		t.Errorf("app traceparent %q, want %q", h.Get("Traceparent"), want)
	}
	for leg, s := range legs {
		for k, v := range map[string]string{
			"http.request.header.x-request-id": "rid-7",
			"http.response.header.x-reply":     "r1",
			"http.response.header.x-done":      "yes",
		} {
			if got := attr(s, k); got != v {
				t.Errorf("%s: %s = %q, want %q", leg, k, got, v)
			}
		}
	}

	c.rec.reset()
	get(t, client, "http://svc-b.test/healthz", map[string]string{"User-Agent": "kube-probe/1.34", "Traceparent": sampledHeader})
	mu.Lock()
	h = seen
	mu.Unlock()
	if h.Get("Traceparent") != sampledHeader {
		t.Errorf("a probe's traceparent changed to %q", h.Get("Traceparent"))
	}
	c.requireNoSpans(t)
}

// The trace headers the relay manages are exactly the ones spans manages, in
// both directions: every one Inject writes is found by the relay's lookup, and
// every one the relay sets apart is removed by Inject (or, the override, by the
// sampling decision) — none is left out, none is extra.
func TestH2TraceHeadersCoverSpans(t *testing.T) {
	ctx := spans.Context{TraceID: spans.NewTraceID(), SpanID: spans.NewSpanID(), Sampled: true, TraceState: "a=b",
		Formats: spans.FormatW3C | spans.FormatB3Single | spans.FormatB3Multi}
	written := 0
	for _, c := range []spans.Context{ctx, {Debug: true, Formats: spans.FormatB3Multi}, {Formats: spans.FormatB3Multi}} {
		h := http.Header{}
		spans.Inject(h, c)
		for k := range h {
			written++
			if key, ok := h2TraceHeader(strings.ToLower(k)); !ok || key != k {
				t.Errorf("spans writes %s, which the relay does not manage", k)
			}
		}
	}
	if written < 7 {
		t.Fatalf("spans wrote only %d trace headers: the check covers nothing", written)
	}
	if len(h2TraceFields) != len(spans.TraceHeaders())+1 {
		t.Errorf("the relay manages %d fields, spans %d trace headers and the override", len(h2TraceFields), len(spans.TraceHeaders()))
	}
	for _, f := range h2TraceFields {
		if key, ok := h2TraceHeader(f.name); !ok || key != f.key || http.CanonicalHeaderKey(f.name) != f.key {
			t.Errorf("%s: %q %v", f.name, key, ok)
		}
		h := http.Header{f.key: {"1"}}
		if f.key == spans.OverrideHeader {
			spans.NewSampler(0).Decide(h)
		} else {
			spans.Inject(h, spans.Context{})
		}
		if len(h) != 0 {
			t.Errorf("the relay manages %s, which spans neither reads nor writes", f.key)
		}
	}
}

// The relay's own header blocks decode as meant and leave the dynamic table alone.
func TestH2StaticFields(t *testing.T) {
	var b []byte
	b = appendStaticField(b, ":status", "502")
	b = appendStaticField(b, "content-type", "application/grpc")
	b = appendStaticField(b, "grpc-message", strings.Repeat("m", 300))
	dec := hpack.NewDecoder(4096, nil)
	fields, err := dec.DecodeFull(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{":status=502", "content-type=application/grpc", "grpc-message=" + strings.Repeat("m", 300)}
	if len(fields) != len(want) {
		t.Errorf("%d fields decoded, want %d", len(fields), len(want))
	}
	for i, f := range fields {
		if i >= len(want) || f.Name+"="+f.Value != want[i] {
			t.Errorf("field %d: %s=%s", i, f.Name, f.Value)
		}
	}
	// Nothing was indexed: index 62 (the first dynamic entry) does not exist.
	if _, err := dec.DecodeFull([]byte{0x80 | 62}); err == nil {
		t.Error("the dynamic table gained an entry")
	}
}

// The upstream's settings reach the client with the relay's limits applied: a
// dynamic table no larger than 64 KiB, at most 1000 streams, and the header list
// limit a terminating server would announce.
func TestH2RelaySettings(t *testing.T) {
	appAddr := rawH2App(t, func(p *h2Peer) { io.Copy(io.Discard, p.conn) },
		http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1 << 20},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	p, err := New(Config{Direction: Outbound, Resolver: fixedResolver(appAddr)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", start(t, p).Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := newH2Peer(t, c)
	io.WriteString(c, h2Preface)
	peer.fr.WriteSettings()
	f, err := peer.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v", f)
	}
	want := map[http2.SettingID]uint32{
		http2.SettingHeaderTableSize:      h2TableCap,
		http2.SettingInitialWindowSize:    1 << 20,
		http2.SettingMaxConcurrentStreams: h2MaxStreams,
		http2.SettingMaxHeaderListSize:    DefaultMaxHeaderBytes + 320,
	}
	sf.ForeachSetting(func(s http2.Setting) error {
		if v, ok := want[s.ID]; !ok || v != s.Val {
			t.Errorf("%v = %d, want %d", s.ID, s.Val, v)
		}
		delete(want, s.ID)
		return nil
	})
	if len(want) > 0 {
		t.Errorf("missing %v", want)
	}
}

// A client whose HPACK decoder keeps no dynamic table: the settings travel end to
// end, and the relay's response decoder follows the upstream's encoder as the
// client's does.
func TestH2RelayClientTableSizeZero(t *testing.T) {
	addr := h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Same", "every time")
		io.WriteString(w, "ok")
	}))
	c := newChain(t, addr.AddrPort())
	p := dialH2(t, c.outLn.Addr().String(), http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	p.fr.ReadMetaHeaders = hpack.NewDecoder(0, nil)
	for i := uint32(1); i < 10; i += 2 {
		p.get(i, "/", "traceparent", sampledHeader)
		if st, body, _ := p.response(i); st != "200" || string(body) != "ok" {
			t.Fatalf("stream %d: %q %q", i, st, body)
		}
	}
	c.rec.wait(t, 4*5)
}
