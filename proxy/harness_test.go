package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// recorder collects the spans a proxy records.
type recorder struct {
	mu    sync.Mutex
	spans []*spans.Span
}

func (r *recorder) Record(s *spans.Span) {
	r.mu.Lock()
	r.spans = append(r.spans, s)
	r.mu.Unlock()
}

// all returns the spans recorded so far, built when asked (the proxy defers
// them, spans.Builder), as the exporter builds them: after the request, and
// the connection, have moved on.
func (r *recorder) all() []*spans.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	built := make([]*spans.Span, len(r.spans))
	for i, s := range r.spans {
		built[i] = spans.Build(s, new(spans.Span))
	}
	return built
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.spans = nil
	r.mu.Unlock()
}

// wait returns the spans once there are n of them. Spans are recorded after the
// response is written, so a client can see its response first.
func (r *recorder) wait(t testing.TB, n int) []*spans.Span {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := r.all()
		if len(s) >= n || time.Now().After(deadline) {
			if len(s) != n {
				t.Fatalf("got %d spans, want %d: %v", len(s), n, spanNames(s))
			}
			return s
		}
		time.Sleep(time.Millisecond)
	}
}

func spanNames(ss []*spans.Span) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name+"/"+attr(s, "hoptrace.leg"))
	}
	return out
}

// byLeg indexes spans by their hoptrace.leg attribute.
func byLeg(t testing.TB, ss []*spans.Span) map[string]*spans.Span {
	t.Helper()
	m := make(map[string]*spans.Span)
	for _, s := range ss {
		leg := attr(s, "hoptrace.leg")
		if m[leg] != nil {
			t.Fatalf("two spans for leg %s", leg)
		}
		m[leg] = s
	}
	return m
}

// attr returns an attribute's value as a string ("" when absent).
func attr(s *spans.Span, key string) string {
	for _, a := range s.Attrs {
		if a.Key != key {
			continue
		}
		switch a.Type {
		case spans.AttrInt:
			return itoa64(a.Int)
		case spans.AttrBool:
			if a.Bool {
				return "true"
			}
			return "false"
		}
		return a.Str
	}
	return ""
}

func hasAttr(s *spans.Span, key string) bool {
	for _, a := range s.Attrs {
		if a.Key == key {
			return true
		}
	}
	return false
}

// listen opens a loopback listener the way the agent does: plain TCP, no MPTCP.
func listen(t testing.TB) net.Listener {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func fixedResolver(dst netip.AddrPort) Resolver {
	return ResolverFunc(func(net.Conn) (netip.AddrPort, error) { return dst, nil })
}

func mustAddrPort(t testing.TB, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, ok := addrPort(a)
	if !ok {
		t.Fatalf("not an ip address: %v", a)
	}
	return ap
}

// start serves p on a fresh listener and stops it when the test ends.
func start(t testing.TB, p *Proxy) net.Listener {
	t.Helper()
	ln := listen(t)
	serveOn(t, p, ln)
	return ln
}

// serveOn serves p on ln and stops it when the test ends.
func serveOn(t testing.TB, p *Proxy, ln net.Listener) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
}

// chain is one hop on loopback: client → outbound proxy → inbound proxy → app,
// the two proxies as the redirect layer wires them, minus the redirection.
type chain struct {
	handoff       *Handoff // nil: the hop goes through TCP
	out, in       *Proxy
	outLn, inLn   net.Listener
	rec           *recorder
	appAddr       netip.AddrPort
	outObs, inObs *observer
}

type chainOption func(dir Direction, c *Config)

// newChain builds a chain in front of the app at appAddr. Tracing samples
// nothing unless a request says otherwise.
func newChain(t testing.TB, appAddr netip.AddrPort, opts ...chainOption) *chain {
	t.Helper()
	return newChainWith(t, appAddr, nil, opts...)
}

// newChainWith is newChain with the inbound proxy's listener wrapped by wrapIn
// (nil: as it is).
func newChainWith(t testing.TB, appAddr netip.AddrPort, wrapIn func(net.Listener) net.Listener, opts ...chainOption) *chain {
	t.Helper()
	c := &chain{rec: &recorder{}, appAddr: appAddr, outObs: &observer{}, inObs: &observer{}}
	if os.Getenv("HOPTRACE_TEST_HANDOFF") == "1" {
		// The whole suite again with the hop in memory (make test runs it so).
		opts = append([]chainOption{withHandoff(NewHandoff())}, opts...)
	}
	base := func(dir Direction, resolver Resolver, dialer Dialer, obs Observer) *Proxy {
		cfg := Config{
			Direction: dir,
			Resolver:  resolver,
			Dialer:    dialer,
			Recorder:  c.rec,
			Sampler:   spans.NewSampler(0),
			Resource:  &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", dir.String()+"-pod")}},
			Observer:  obs,
		}
		for _, o := range opts {
			o(dir, &cfg)
		}
		if c.handoff == nil {
			c.handoff = cfg.Handoff
		}
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The inbound proxy dials the app from 127.0.0.6, as in a pod.
	inDialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 6)}}
	c.in = base(Inbound, fixedResolver(appAddr), inDialer, c.inObs)
	c.inLn = listen(t)
	if wrapIn != nil {
		c.inLn = wrapIn(c.inLn)
	}
	serveOn(t, c.in, c.inLn)
	if c.handoff != nil {
		// On loopback the client "pod" and the server "pod" are both 127.0.0.1.
		c.handoff.SetTargets([]HandoffTarget{{Addrs: []netip.Addr{mustAddrPort(t, c.inLn.Addr()).Addr()}}})
	}
	c.out = base(Outbound, fixedResolver(mustAddrPort(t, c.inLn.Addr())), &net.Dialer{}, c.outObs)
	c.outLn = start(t, c.out)
	return c
}

// withHandoff gives both proxies of the chain h: the hop goes through memory.
func withHandoff(h *Handoff) chainOption {
	return func(_ Direction, c *Config) { c.Handoff = h }
}

// dial connects to the outbound proxy, as app A's connect() would be
// redirected; the connection is closed when the test ends.
func (c *chain) dial(t testing.TB) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", c.outLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// client returns an HTTP client whose every connection goes to the outbound
// proxy, as app A's connect() would be redirected.
func (c *chain) client() *http.Client {
	return &http.Client{Transport: c.transport()}
}

func (c *chain) transport() *http.Transport {
	addr := c.outLn.Addr().String()
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		DisableCompression:  true,
		MaxIdleConnsPerHost: 16,
	}
}

// observer records what a proxy reports.
type observer struct {
	mu       sync.Mutex
	requests []RequestStats
	flows    []FlowStats
	refused  []Refusal
}

func (o *observer) ObserveRefused(_ Direction, why Refusal) {
	o.mu.Lock()
	o.refused = append(o.refused, why)
	o.mu.Unlock()
}

func (o *observer) ObserveRequest(s RequestStats) {
	o.mu.Lock()
	o.requests = append(o.requests, s)
	o.mu.Unlock()
}

func (o *observer) ObserveFlow(s FlowStats) {
	o.mu.Lock()
	o.flows = append(o.flows, s)
	o.mu.Unlock()
}

func (o *observer) snapshot() ([]RequestStats, []FlowStats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]RequestStats(nil), o.requests...), append([]FlowStats(nil), o.flows...)
}

// app starts an HTTP/1.1 test server and returns its address. configure, if
// given, sees the server before it starts.
func app(t testing.TB, h http.Handler, configure ...func(*http.Server)) (*httptest.Server, netip.AddrPort) {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	for _, f := range configure {
		f(s.Config)
	}
	s.Listener.Close()
	s.Listener = listen(t)
	s.Start()
	t.Cleanup(s.Close)
	return s, mustAddrPort(t, s.Listener.Addr())
}

// eventually polls cond until it holds or a few seconds pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
