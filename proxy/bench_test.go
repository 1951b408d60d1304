package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"

	"github.com/hoptrace/hoptrace/spans"
)

// Round trips over loopback: a small GET answered with a small body, on a kept
// alive connection. Direct is the baseline; Proxied crosses both proxies of a hop
// (outbound and inbound), as every meshed request does. Run:
//
//	go test ./proxy -run '^$' -bench . -benchmem -count 5

// benchApp is the upstream every benchmark talks to.
func benchApp(b *testing.B) *net.TCPAddr {
	srv, _ := app(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello from b")
	}))
	return srv.Listener.Addr().(*net.TCPAddr)
}

func benchClient(addr string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		DisableCompression: true,
	}}
}

func runRoundTrips(b *testing.B, client *http.Client, traceparent string) {
	req, _ := http.NewRequest(http.MethodGet, "http://svc-b.test/users/42", nil)
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	roundTrip := func() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	roundTrip() // connect outside the timer
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		roundTrip()
	}
	// CPU time of the whole process (client, proxies, app) per round trip: on a
	// shared machine it wanders much less than wall time, and Proxied minus
	// Direct is what the two proxies cost.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// discard is a recorder that only counts, and builds what it gets unless
// told not to.
type discard struct {
	n       atomic.Int64
	noBuild bool
	mu      sync.Mutex
	scratch spans.Span
}

// Record counts s, builds it (a deferred span is built by its consumer: the
// exporter builds each just before encoding it) and releases it, as the
// exporter does once it has encoded it.
func (d *discard) Record(s *spans.Span) {
	d.n.Add(1)
	if !d.noBuild {
		d.mu.Lock()
		spans.Build(s, &d.scratch)
		d.mu.Unlock()
	}
	spans.Release(s)
}

func benchChain(b *testing.B, rate float64, opts ...chainOption) (*chain, *discard) {
	rec := &discard{}
	c := newChain(b, benchApp(b).AddrPort(), append([]chainOption{func(_ Direction, cfg *Config) {
		cfg.Recorder = rec
		cfg.Sampler = spans.NewSampler(rate)
	}}, opts...)...)
	return c, rec
}

func BenchmarkDirect(b *testing.B) {
	runRoundTrips(b, benchClient(benchApp(b).String()), "")
}

// BenchmarkProxiedUnsampled: the common case, a context arrives unsampled.
func BenchmarkProxiedUnsampled(b *testing.B) {
	c, rec := benchChain(b, 0)
	runRoundTrips(b, benchClient(c.outLn.Addr().String()), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	if rec.n.Load() != 0 {
		b.Fatal("unsampled requests recorded spans")
	}
}

// BenchmarkProxiedHandoffUnsampled is BenchmarkProxiedUnsampled with the hop
// between the proxies in memory (Config.Handoff), as for two pods of a node.
func BenchmarkProxiedHandoffUnsampled(b *testing.B) {
	c, _ := benchChain(b, 0, withHandoff(NewHandoff()))
	runRoundTrips(b, benchClient(c.outLn.Addr().String()), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	if st := c.handoff.Stats(); st.Matched == 0 {
		b.Fatalf("nothing handed off: %+v", st)
	}
}

// BenchmarkProxiedNoContext: no trace headers, nothing sampled: the proxies
// start and propagate an unsampled context.
func BenchmarkProxiedNoContext(b *testing.B) {
	c, _ := benchChain(b, 0)
	runRoundTrips(b, benchClient(c.outLn.Addr().String()), "")
}

// BenchmarkProxiedSampled: every request is traced, four spans each.
func BenchmarkProxiedSampled(b *testing.B) {
	c, rec := benchChain(b, 1)
	runRoundTrips(b, benchClient(c.outLn.Addr().String()), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if rec.n.Load() == 0 {
		b.Fatal("no spans recorded")
	}
}

func h2cBenchClient(addr string) *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func benchH2CApp(b *testing.B) string {
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello from b")
	}), Protocols: new(http.Protocols)}
	s.Protocols.SetUnencryptedHTTP2(true)
	ln := listen(b)
	go s.Serve(ln)
	b.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

func BenchmarkDirectH2C(b *testing.B) {
	runRoundTrips(b, h2cBenchClient(benchH2CApp(b)), "")
}

func BenchmarkProxiedH2CUnsampled(b *testing.B) {
	addr := benchH2CApp(b)
	c := newChain(b, mustAddrPort(b, mustTCPAddr(b, addr)), func(_ Direction, cfg *Config) { cfg.Recorder = &discard{} })
	runRoundTrips(b, h2cBenchClient(c.outLn.Addr().String()), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
}

func mustTCPAddr(b *testing.B, s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		b.Fatal(err)
	}
	return a
}
