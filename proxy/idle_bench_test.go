package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"testing"
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
			if _, err := io.WriteString(cn, req); err != nil {
				b.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(cn), nil)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
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
