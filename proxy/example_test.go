package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"time"

	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/spans"
)

// One outbound proxy in front of an app, on loopback. In the agent each pod has
// two: its listeners are opened inside the pod's netns (MPTCP off), the outbound
// Resolver reads the redirect layer's BPF map, the Dialers dial from the pod's
// netns, and the inbound proxy (LocalAddrResolver, dialing from 127.0.0.6, which
// sk_lookup lets through) serves what arrives for the pod.
func Example() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from b")
	}))
	defer app.Close()
	appAddr := netip.MustParseAddrPort(app.Listener.Addr().String())

	// The agent records into its OTLP exporter. The proxy defers its spans
	// (spans.Builder): a recorder builds each when it reads it.
	var recorded []*spans.Span
	out, err := proxy.New(proxy.Config{
		Direction: proxy.Outbound,
		// Where the app's connection was going before the redirect.
		Resolver: proxy.ResolverFunc(func(net.Conn) (netip.AddrPort, error) { return appAddr, nil }),
		Recorder: spans.RecorderFunc(func(s *spans.Span) { recorded = append(recorded, spans.Build(s, new(spans.Span))) }),
		Sampler:  spans.NewSampler(1),
		Resource: &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", "a")}},
		// Kubelet probes are proxied, never traced.
		SkipTrace: func(r proxy.RequestInfo) bool { return strings.HasPrefix(r.UserAgent, "kube-probe/") },
		// A server-speaks-first port is spliced without the detection wait.
		SkipDetect: func(dst netip.AddrPort) bool { return dst.Port() == 3306 },
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go out.Serve(ln)

	for _, ua := range []string{"curl/8.5", "kube-probe/1.34"} {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/hello", nil)
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}

	// On pod deletion or agent shutdown: in-flight requests finish, idle
	// connections close, and every span is recorded by the time it returns.
	http.DefaultClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := out.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	// The traced request has two spans, the client leg a child of the server
	// leg; the probe has none.
	for _, s := range recorded {
		fmt.Println(s.Name, s.Attrs[0].Str, s.ParentID == recorded[0].SpanID)
	}
	// Output:
	// 200 hello from b
	// 200 hello from b
	// GET outbound-server false
	// GET outbound-client true
}
