package proxy_test

import (
	"context"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/spans"
)

// The two proxies of one pod, as the agent wires them: the listeners are opened
// inside the pod's netns (MPTCP off), the outbound resolver reads the redirect
// layer's map, and the dialers create their sockets in the pod's netns.
func Example() {
	var (
		outboundLn, inboundLn net.Listener   // opened in the pod's netns
		originalDst           proxy.Resolver // redirect: the BPF map lookup
		podDialer             proxy.Dialer   // dials from the pod's netns
		exporter              spans.Recorder // the OTLP exporter
	)
	pod := &spans.Resource{Attrs: []spans.Attr{
		spans.String("service.name", "b"), spans.String("k8s.pod.name", "b-7d9f"),
	}}
	sampler := spans.NewSampler(0.001)
	skipProbes := func(r *http.Request) bool { return strings.HasPrefix(r.UserAgent(), "kube-probe/") }

	out, err := proxy.New(proxy.Config{
		Direction: proxy.Outbound, Resolver: originalDst, Dialer: podDialer,
		Recorder: exporter, Sampler: sampler, Resource: pod, SkipTrace: skipProbes,
	})
	if err != nil {
		log.Fatal(err)
	}
	in, err := proxy.New(proxy.Config{
		Direction: proxy.Inbound, Resolver: proxy.LocalAddrResolver,
		// In the pod's netns too; 127.0.0.6 is what sk_lookup lets through.
		Dialer:   &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 6)}},
		Recorder: exporter, Sampler: sampler, Resource: pod, SkipTrace: skipProbes,
		// A server-speaks-first port is spliced without the detection wait.
		SkipDetect: func(dst netip.AddrPort) bool { return dst.Port() == 3306 },
	})
	if err != nil {
		log.Fatal(err)
	}
	go out.Serve(outboundLn)
	go in.Serve(inboundLn)

	// On pod deletion or agent shutdown:
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out.Shutdown(ctx)
	in.Shutdown(ctx)
}
