package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// BenchmarkIdleConnMemory measures what a kept-alive HTTP/1.1 client connection
// costs the proxies while it waits for its next request: heap plus goroutine
// stacks of the whole process (both proxies, the app and the clients), per
// connection, after one request on each. A node has thousands of such
// connections, and the agent's memory budget is per node. Run:
//
//	go test ./proxy -run '^$' -bench IdleConnMemory -benchtime 1x -count 3
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 1000
	c, _ := benchChain(b, 1)
	addr := c.outLn.Addr().String()

	base := settledMemory()
	open := make([]net.Conn, 0, conns)
	defer func() {
		for _, cn := range open {
			cn.Close()
		}
	}()
	req := "GET /users/42 HTTP/1.1\r\nHost: svc-b.test\r\n\r\n"
	for range b.N {
		for len(open) < conns {
			cn, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			open = append(open, cn)
			// One request, so that both proxies went through a whole exchange
			// (buffers, spans, a pooled upstream) before the connection idles.
			roundTrip(b, cn, req)
		}
	}
	after := settledMemory()
	b.ReportMetric(float64(after.heap-base.heap)/conns, "heap-B/conn")
	b.ReportMetric(float64(after.stack-base.stack)/conns, "stack-B/conn")
	b.ReportMetric(float64(after.heap+after.stack-base.heap-base.stack)/conns, "B/conn")
}

type memUse struct{ heap, stack uint64 }

// settledMemory is the live heap and stack memory after two collections (the
// second one shrinks stacks of goroutines that grew and went back to sleep).
func settledMemory() memUse {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memUse{heap: m.HeapAlloc, stack: m.StackInuse}
}

// BenchmarkInFlightMemory measures what a request in flight costs the proxies:
// heap plus goroutine stacks while 1,000 sampled requests, each on its own new
// connection, wait for the app at once — what a client opening 1,000
// connections together does to a node, and where the agent's peak memory comes
// from. The same burst straight to the app is subtracted. Run:
//
//	go test ./proxy -run '^$' -bench InFlightMemory -benchtime 1x -count 3
func BenchmarkInFlightMemory(b *testing.B) {
	const inFlight = 1000
	burst := func(addr string, arrived, release chan struct{}) memUse {
		base := settledMemory()
		var wg sync.WaitGroup
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cn, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer cn.Close()
				io.WriteString(cn, "GET /users/42 HTTP/1.1\r\nHost: svc-b.test\r\n"+
					"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(cn), nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		for range inFlight {
			<-arrived
		}
		peak := settledMemory()
		close(release)
		wg.Wait()
		return memUse{heap: peak.heap - base.heap, stack: peak.stack - base.stack}
	}
	holdingApp := func() (netip.AddrPort, chan struct{}, chan struct{}) {
		arrived, release := make(chan struct{}, inFlight), make(chan struct{})
		_, addr := app(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-release
			io.WriteString(w, "hello from b")
		}))
		return addr, arrived, release
	}
	var proxied, direct memUse
	for range b.N {
		addr, arrived, release := holdingApp()
		direct = burst(addr.String(), arrived, release)
		addr, arrived, release = holdingApp()
		c := newChain(b, addr, func(_ Direction, cfg *Config) {
			cfg.Recorder = &discard{}
			cfg.Sampler = spans.NewSampler(1)
		})
		proxied = burst(c.outLn.Addr().String(), arrived, release)
	}
	b.ReportMetric(float64(proxied.heap-direct.heap)/inFlight, "heap-B/req")
	b.ReportMetric(float64(proxied.stack-direct.stack)/inFlight, "stack-B/req")
}

// BenchmarkIdleH2ConnMemory is BenchmarkIdleConnMemory for HTTP/2: heap plus
// goroutine stacks per relayed HTTP/2 connection with no stream open, after
// one request, through one proxy in front of an app that checks nothing (so
// that the app's own cost is small and the same with or without the relay's).
// A gRPC channel spends its life like this. Run:
//
//	go test ./proxy -run '^$' -bench IdleH2ConnMemory -benchtime 1x -count 3
func BenchmarkIdleH2ConnMemory(b *testing.B) {
	const conns = 200
	_, ln := oneProxy(b, lenientH2App(b, &frameLog{}), &recorder{})
	base := settledMemory()
	for range b.N {
		for range conns {
			p := dialH2(b, ln.Addr().String())
			p.get(1, "/")
			p.response(1)
		}
	}
	time.Sleep(100 * time.Millisecond) // the relays go back to waiting
	after := settledMemory()
	b.ReportMetric(float64(after.heap-base.heap)/conns, "heap-B/conn")
	b.ReportMetric(float64(after.stack-base.stack)/conns, "stack-B/conn")
}
