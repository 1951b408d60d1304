package exporter

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/hoptrace/hoptrace/spans"
)

// grpcExporter is an exporter to f that sends what it is given at once
// (Flush), retrying quickly.
func grpcExporter(t *testing.T, f *fakeGRPC, config ...func(*Config)) *Exporter {
	t.Helper()
	cfg := testConfig()
	cfg.Endpoint = "http://" + f.addr
	cfg.BatchTimeout = time.Hour
	for _, c := range config {
		c(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	return e
}

func exportHops(t *testing.T, e *Exporter, n int) {
	t.Helper()
	for _, s := range hops(n, podResource("a", "a-1"), podResource("b", "b-1")) {
		e.Record(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func totalSpans(f *fakeGRPC) int {
	n := 0
	for _, r := range f.got() {
		n += r.spans
	}
	return n
}

// Batches after the first ride the same connection.
func TestGRPCReusesConnection(t *testing.T) {
	f := startFakeGRPC(t, nil)
	e := grpcExporter(t, f)
	for range 5 {
		exportHops(t, e, 10)
	}
	if st := e.Stats(); st.Exported != 200 || st.Retries != 0 {
		t.Fatalf("stats %+v: want 200 exported, no retries", st)
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 batches, want 1", n)
	}
}

// A collector that closes idle connections (GOAWAY, then close) or ages them
// out costs no failed attempt: the next batch finds out before it is sent and
// goes on a new connection.
func TestGRPCConnectionClosedByCollector(t *testing.T) {
	for _, tt := range []struct {
		name string
		kp   keepalive.ServerParameters
	}{
		{"idle", keepalive.ServerParameters{MaxConnectionIdle: 50 * time.Millisecond}},
		{"age", keepalive.ServerParameters{MaxConnectionAge: 50 * time.Millisecond, MaxConnectionAgeGrace: 50 * time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeGRPC(t, nil, grpc.KeepaliveParams(tt.kp))
			e := grpcExporter(t, f)
			for range 4 {
				exportHops(t, e, 5)
				time.Sleep(300 * time.Millisecond) // past idle or age and its grace
			}
			if st := e.Stats(); st.Exported != 80 || st.Retries != 0 || st.FailedBatches != 0 {
				t.Fatalf("stats %+v: want 80 exported, no retries or failures", st)
			}
			if got := totalSpans(f); got != 80 {
				t.Errorf("collector got %d spans, want 80", got)
			}
			if n := f.conns.Load(); n < 2 {
				t.Errorf("%d connections: the collector's closes were not seen", n)
			}
		})
	}
}

// A batch larger than the collector's flow-control windows (fixed at the
// protocol's 64 KiB, no dynamic growth) waits for WINDOW_UPDATEs and arrives
// whole.
func TestGRPCSmallFlowControlWindows(t *testing.T) {
	f := startFakeGRPC(t, nil, grpc.InitialWindowSize(65535), grpc.InitialConnWindowSize(65535))
	e := grpcExporter(t, f, func(c *Config) { c.MaxQueueSize, c.MaxBatchSize = 4096, 4096 })
	exportHops(t, e, 1000) // 4,000 spans, about 1.5 MB in one request
	if st := e.Stats(); st.Exported != 4000 || st.Retries != 0 {
		t.Fatalf("stats %+v: want 4000 exported, no retries", st)
	}
	if got := f.got(); len(got) != 1 || got[0].spans != 4000 {
		t.Errorf("collector got %+v, want one request of 4000 spans", got)
	}
}

// Something that is not an HTTP/2 server fails the attempt with an error
// that says so, and the batch is retried, not lost silently.
func TestGRPCNotHTTP2(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
				time.Sleep(50 * time.Millisecond)
				c.Close()
			}()
		}
	}()
	start := time.Now()
	err = sendOnce(t, newSender(t, l.Addr().String()))
	if err == nil {
		t.Fatal("an HTTP/1 server accepted the export")
	}
	if retryable, _ := classify(err); !retryable {
		t.Errorf("%v: not retryable", err)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("the attempt ran to its deadline: %v", err)
	}
	t.Log(err)
}

// newSender is a gRPC sender to a collector at addr, closed with the test.
func newSender(t *testing.T, addr string) *grpcSender {
	t.Helper()
	cfg := testConfig()
	cfg.Endpoint = "http://" + addr
	s, err := newGRPCSender(cfg, mustTarget(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// sendOnce makes one export attempt of one span, with 5 s to go.
func sendOnce(t *testing.T, s *grpcSender) error {
	t.Helper()
	var enc encoder
	p := encodePayload(&enc, []*spans.Span{named("x")})
	defer p.free()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.send(ctx, p)
	return err
}

func mustTarget(t *testing.T, cfg Config) target {
	t.Helper()
	tg, err := cfg.withDefaults().target()
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// rawH2Collector is an HTTP/2 server made of frames, for what grpc-go does not
// do on demand: it answers the n-th call on a connection (1-based, counted per
// connection) as answer says: "ok", "refuse" (RST_STREAM REFUSED_STREAM) or
// "goaway" (GOAWAY naming the stream before it, then close).
func rawH2Collector(t *testing.T, answer func(conn, call int) string) (addr string, conns *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns = new(atomic.Int32)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := int(conns.Add(1))
			go serveRawH2(c, n, answer)
		}
	}()
	return l.Addr().String(), conns
}

func serveRawH2(c net.Conn, conn int, answer func(conn, call int) string) {
	defer c.Close()
	preface := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	block := func(fields ...string) []byte {
		hbuf.Reset()
		for i := 0; i < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return append([]byte(nil), hbuf.Bytes()...)
	}
	call := 0
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.DataFrame:
			if len(f.Data()) > 0 {
				fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			}
			if !f.StreamEnded() {
				continue
			}
			call++
			id := f.StreamID
			switch answer(conn, call) {
			case "refuse":
				fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
			case "goaway":
				fr.WriteGoAway(id-2, http2.ErrCodeNo, nil)
				return
			default:
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true,
					BlockFragment: block(":status", "200", "content-type", "application/grpc")})
				fr.WriteData(id, false, []byte{0, 0, 0, 0, 0})
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, EndStream: true,
					BlockFragment: block("grpc-status", "0")})
			}
		}
	}
}

// A call the collector refuses (REFUSED_STREAM), or one a GOAWAY says it did
// not take, on a connection used before goes once more on a new connection:
// the caller sees success. On a new connection a refusal is the call's error,
// for the exporter's retries.
func TestGRPCRefusedCallRetriedOnNewConnection(t *testing.T) {
	for _, how := range []string{"refuse", "goaway"} {
		t.Run(how, func(t *testing.T) {
			addr, conns := rawH2Collector(t, func(conn, call int) string {
				if conn == 1 && call == 2 {
					return how
				}
				return "ok"
			})
			s := newSender(t, addr)
			for i := range 3 {
				if err := sendOnce(t, s); err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
			}
			if n := conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2 (the refused call once more on a new one)", n)
			}
		})
	}
	t.Run("fresh connection", func(t *testing.T) {
		addr, _ := rawH2Collector(t, func(int, int) string { return "refuse" })
		err := sendOnce(t, newSender(t, addr))
		if err == nil {
			t.Fatal("a refused call succeeded")
		}
		if retryable, _ := classify(err); !retryable {
			t.Errorf("%v: not retryable", err)
		}
	})
}
