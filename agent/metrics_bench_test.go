package agent

import (
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/proxy"
)

// BenchmarkObserveRequest measures what counting one request costs the
// agent: two leg histograms and the request counter of its label set. Run:
//
//	go test ./agent -run '^$' -bench ObserveRequest -count 10
func BenchmarkObserveRequest(b *testing.B) {
	o := newPodObserver(newMetrics(), newFlowTable(4), "ns", "p")
	st := proxy.RequestStats{Direction: proxy.Inbound, Protocol: proxy.ProtocolHTTP1, Status: 200, GRPCStatus: -1,
		ServerTime: 300 * time.Microsecond, ClientTime: 200 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		o.ObserveRequest(st)
	}
}
