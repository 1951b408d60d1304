package agent

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/spans"
)

func TestSamplingTrust(t *testing.T) {
	a := netip.MustParseAddr
	nets, err := ParseMeshNetworks([]string{"10.244.0.0/16", "fd00:10:244::/48"})
	if err != nil {
		t.Fatal(err)
	}
	pods := []netip.Addr{a("192.168.5.7"), a("2001:db8::7")}
	tests := []struct {
		name     string
		everyone bool
		nets     []netip.Prefix
		pods     []netip.Addr
		peer     netip.Addr
		want     bool
	}{
		{name: "captured pod", pods: pods, peer: a("192.168.5.7"), want: true},
		{name: "captured pod, IPv6", pods: pods, peer: a("2001:db8::7"), want: true},
		{name: "captured pod, IPv4-mapped", pods: pods, peer: a("::ffff:192.168.5.7"), want: true},
		{name: "another address", pods: pods, peer: a("192.168.5.8"), want: false},
		{name: "no pods yet", peer: a("192.168.5.7"), want: false},
		{name: "mesh network", nets: nets, peer: a("10.244.3.9"), want: true},
		{name: "mesh network, first address", nets: nets, peer: a("10.244.0.0"), want: true},
		{name: "just outside the mesh network", nets: nets, peer: a("10.245.0.1"), want: false},
		{name: "mesh network, IPv6", nets: nets, peer: a("fd00:10:244:0:1::5"), want: true},
		{name: "outside the IPv6 mesh network", nets: nets, peer: a("fd00:10:245::5"), want: false},
		{name: "IPv4-mapped peer in an IPv4 mesh network", nets: nets, peer: a("::ffff:10.244.1.1"), want: true},
		{name: "loopback: the pod itself", peer: a("127.0.0.1"), want: true},
		{name: "IPv6 loopback", peer: a("::1"), want: true},
		{name: "no address", nets: nets, pods: pods, peer: netip.Addr{}, want: false},
		{name: "everyone trusted", everyone: true, peer: a("203.0.113.9"), want: true},
		{name: "external", nets: nets, pods: pods, peer: a("203.0.113.9"), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newSamplingTrust(tt.everyone, tt.nets)
			if tt.pods != nil {
				tr.setPods(tt.pods)
			}
			if got := tr.trusted(tt.peer); got != tt.want {
				t.Errorf("trusted(%v) = %v, want %v", tt.peer, got, tt.want)
			}
		})
	}
}

// The pod set is replaced, not added to: a released pod's address is no
// longer trusted.
func TestSamplingTrustSetPodsReplaces(t *testing.T) {
	tr := newSamplingTrust(false, nil)
	p1, p2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	tr.setPods([]netip.Addr{p1})
	tr.setPods([]netip.Addr{p2})
	if tr.trusted(p1) || !tr.trusted(p2) {
		t.Errorf("after replacing %v by %v: trusted %v, %v", p1, p2, tr.trusted(p1), tr.trusted(p2))
	}
}

func TestParseMeshNetworks(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		in   []string
		want []netip.Prefix
		err  bool
	}{
		{in: nil, want: nil},
		{in: []string{"10.244.0.0/16"}, want: []netip.Prefix{p("10.244.0.0/16")}},
		{in: []string{" 10.244.0.0/16 ", "", "fd00::/8"}, want: []netip.Prefix{p("10.244.0.0/16"), p("fd00::/8")}},
		{in: []string{"10.244.1.7/16"}, want: []netip.Prefix{p("10.244.0.0/16")}},
		{in: []string{"10.0.0.9"}, want: []netip.Prefix{p("10.0.0.9/32")}},
		{in: []string{"fd00::9"}, want: []netip.Prefix{p("fd00::9/128")}},
		{in: []string{"10.244.0.0/33"}, err: true},
		{in: []string{"pods"}, err: true},
		{in: []string{"10.0.0.0/8", "10.0.0.0/"}, err: true},
	}
	for _, tt := range tests {
		got, err := ParseMeshNetworks(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseMeshNetworks(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// What the proxies report of forced and untrusted sampling becomes the pod's
// counters, and detaching the pod removes them.
func TestSamplingOutcomeCounters(t *testing.T) {
	m := newMetrics()
	o := newPodObserver(m, newFlowTable(4), "ns", "p")
	for _, out := range []spans.Outcome{
		spans.OutcomeNone, spans.OutcomeForced, spans.OutcomeRefused, spans.OutcomeRefused,
		spans.OutcomeUntrusted, spans.OutcomeRefused, spans.OutcomeNone,
	} {
		o.ObserveRequest(proxy.RequestStats{Direction: proxy.Inbound, Protocol: proxy.ProtocolHTTP1, Status: 200, GRPCStatus: -1, Sampling: out})
	}
	if got := testutil.ToFloat64(m.refused.WithLabelValues("ns", "p")); got != 3 {
		t.Errorf("hoptrace_forced_traces_refused_total = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.untrusted.WithLabelValues("ns", "p")); got != 1 {
		t.Errorf("hoptrace_sampling_untrusted_ignored_total = %v, want 1", got)
	}
	o.forget()
	if n := testutil.CollectAndCount(m.refused) + testutil.CollectAndCount(m.untrusted); n != 0 {
		t.Errorf("%d series left after the pod was released", n)
	}
}
