package agent

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/redirect"
)

func TestFlowTableKeepsTheNewest(t *testing.T) {
	ft := newFlowTable(3)
	for i := range 5 {
		ft.add(Flow{Requests: int64(i)})
	}
	got := ft.recent()
	if len(got) != 3 || got[0].Requests != 2 || got[2].Requests != 4 {
		t.Fatalf("recent = %+v, want requests 2,3,4", got)
	}
}

func TestFlowTableWatchersNeverBlock(t *testing.T) {
	ft := newFlowTable(8)
	ch, cancel := ft.subscribe()
	defer cancel()
	done := make(chan struct{})
	go func() {
		for range 1000 { // far more than the watcher's buffer
			ft.add(Flow{})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("add blocked on a slow watcher")
	}
	if len(ch) == 0 || ft.missed.Load() == 0 {
		t.Errorf("buffered %d, missed %d: want some of each", len(ch), ft.missed.Load())
	}
}

func TestMatchesPod(t *testing.T) {
	for _, tt := range []struct {
		full, want string
		ok         bool
	}{
		{"demo/hello", "demo/hello", true},
		{"demo/hello", "hello", true},
		{"demo/hello", "ello", false},
		{"demo/hello", "demo", false},
	} {
		if got := matchesPod(tt.full, tt.want); got != tt.ok {
			t.Errorf("matchesPod(%q, %q) = %v", tt.full, tt.want, got)
		}
	}
}

func TestRequestCountersByLabelSet(t *testing.T) {
	m := newMetrics()
	o := newPodObserver(m, newFlowTable(4), "ns", "p")
	for _, st := range []int{200, 204, 503, 200} {
		o.ObserveRequest(proxy.RequestStats{Direction: proxy.Inbound, Protocol: proxy.ProtocolHTTP1, Status: st, GRPCStatus: -1})
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("ns", "p", "inbound", "http1", "2xx")); got != 3 {
		t.Errorf("2xx = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("ns", "p", "inbound", "http1", "5xx")); got != 1 {
		t.Errorf("5xx = %v, want 1", got)
	}

	// Every class, on both directions and other protocols, and statuses
	// beyond the usual classes (counted by their own label).
	for _, tt := range []struct {
		st    proxy.RequestStats
		class string
	}{
		{proxy.RequestStats{Direction: proxy.Outbound, Protocol: proxy.ProtocolGRPC, Status: 200, GRPCStatus: 0}, "2xx"},
		{proxy.RequestStats{Direction: proxy.Outbound, Protocol: proxy.ProtocolGRPC, Status: 200, GRPCStatus: 14}, "grpc-error"},
		{proxy.RequestStats{Direction: proxy.Outbound, Protocol: proxy.ProtocolHTTP2, Failed: true, GRPCStatus: -1}, "failed"},
		{proxy.RequestStats{Direction: proxy.Inbound, Protocol: proxy.ProtocolWebSocket, Status: 101, GRPCStatus: -1}, "1xx"},
		{proxy.RequestStats{Direction: proxy.Inbound, Protocol: proxy.ProtocolHTTP1, Status: 0, GRPCStatus: -1}, "none"},
		{proxy.RequestStats{Direction: proxy.Inbound, Protocol: proxy.ProtocolHTTP1, Status: 404, GRPCStatus: -1}, "4xx"},
		{proxy.RequestStats{Direction: proxy.Inbound, Protocol: proxy.ProtocolHTTP1, Status: 799, GRPCStatus: -1}, "7xx"},
		{proxy.RequestStats{Direction: proxy.Inbound, Protocol: proxy.Protocol(200), Status: 200, GRPCStatus: -1}, "2xx"},
	} {
		for range 2 { // the second time from the slot (or the map) the first one filled
			o.ObserveRequest(tt.st)
		}
		if got := testutil.ToFloat64(m.requests.WithLabelValues("ns", "p", tt.st.Direction.String(), tt.st.Protocol.String(), tt.class)); got != 2 {
			t.Errorf("%s %s %s = %v, want 2", tt.st.Direction, tt.st.Protocol, tt.class, got)
		}
	}
}

func TestFlowCountersByLabelSet(t *testing.T) {
	m := newMetrics()
	o := newPodObserver(m, newFlowTable(4), "ns", "p")
	for _, s := range []proxy.FlowStats{
		{Direction: proxy.Outbound, Protocol: proxy.ProtocolHTTP1},
		{Direction: proxy.Inbound, Protocol: proxy.ProtocolHTTP1},
		{Direction: proxy.Inbound, Protocol: proxy.ProtocolGRPC},
		{Direction: proxy.Inbound, Protocol: proxy.ProtocolOpaque},
		{Direction: proxy.Inbound, Protocol: proxy.Protocol(200)}, // no slot
	} {
		for range 2 { // the second time from the slot the first one filled
			o.ObserveFlow(s)
		}
		if got := testutil.ToFloat64(m.flows.WithLabelValues("ns", "p", s.Direction.String(), s.Protocol.String())); got != 2 {
			t.Errorf("%s %s = %v, want 2", s.Direction, s.Protocol, got)
		}
	}
}

// A proxied flow is kept as the proxy's numbers and formatted when read: the
// table and its watchers see what flowFromStats makes of them.
func TestFlowTableFormatsProxiedFlowsWhenRead(t *testing.T) {
	ft := newFlowTable(4)
	ch, cancel := ft.subscribe()
	defer cancel()
	start := time.Unix(1700000000, 0)
	s := proxy.FlowStats{
		Direction: proxy.Outbound, Protocol: proxy.ProtocolHTTP1,
		Peer: netip.MustParseAddrPort("10.0.0.1:40000"), Dst: netip.MustParseAddrPort("10.0.0.2:8080"),
		Start: start, End: start.Add(time.Second), Requests: 4, BytesIn: 10, BytesOut: 20,
		ServerTime: 8 * time.Millisecond, ClientTime: 4 * time.Millisecond,
	}
	ft.addStats("demo/hello", s)
	ft.add(Flow{Pod: "demo/hello", Reason: "excluded-port"})
	want := flowFromStats("demo/hello", s)
	got := ft.recent()
	if len(got) != 2 || !reflect.DeepEqual(got[0], want) || got[1].Reason != "excluded-port" {
		t.Fatalf("recent = %+v, want %+v then the bypass", got, want)
	}
	if got[0].Client != "10.0.0.1:40000" || got[0].Dst != "10.0.0.2:8080" || got[0].LegsMs["outbound-server"] != 2 {
		t.Errorf("formatted %+v", got[0])
	}
	if w := <-ch; !reflect.DeepEqual(w, want) {
		t.Errorf("watcher got %+v, want %+v", w, want)
	}
}

func TestRefusedConnectionsCounted(t *testing.T) {
	m := newMetrics()
	o := newPodObserver(m, newFlowTable(4), "ns", "p")
	var _ proxy.RefusalObserver = o // the proxy finds it by this interface
	o.ObserveRefused(proxy.Outbound, proxy.RefusedNoOriginalDst)
	o.ObserveRefused(proxy.Outbound, proxy.RefusedNoOriginalDst)
	o.ObserveRefused(proxy.Inbound, proxy.RefusedSelf)
	if got := testutil.ToFloat64(m.unserved.WithLabelValues("ns", "p", "outbound", "no-original-dst")); got != 2 {
		t.Errorf("outbound no-original-dst = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.unserved.WithLabelValues("ns", "p", "inbound", "self")); got != 1 {
		t.Errorf("inbound self = %v, want 1", got)
	}
	o.forget()
	if n := testutil.CollectAndCount(m.unserved); n != 0 {
		t.Errorf("%d series left after the pod was forgotten", n)
	}
}

func TestRedirectCollectorOriginalDstCounts(t *testing.T) {
	c := newRedirectCollector()
	c.readCounters(func() (redirect.Counters, bool) {
		return redirect.Counters{Redirected: 10, OrigFromMap: 3, OrigUnclaimed: 2}, true
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := `
# HELP hoptrace_redirect_original_dst_from_map_total Original destinations of outbound connections read from the BPF map instead of the ring, because the ring was full (the agent fell behind accepting); each costs a system call.
# TYPE hoptrace_redirect_original_dst_from_map_total counter
hoptrace_redirect_original_dst_from_map_total 3
# HELP hoptrace_redirect_original_dst_unclaimed_total Original-destination records dropped because the agent never accepted their connection (the pod's listener closed first).
# TYPE hoptrace_redirect_original_dst_unclaimed_total counter
hoptrace_redirect_original_dst_unclaimed_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"hoptrace_redirect_original_dst_from_map_total", "hoptrace_redirect_original_dst_unclaimed_total"); err != nil {
		t.Error(err)
	}
}
