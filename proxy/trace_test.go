package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hoptrace/hoptrace/spans"
)

// captured is what the app saw of the requests it got.
type captured struct {
	mu      sync.Mutex
	headers []http.Header
}

func (c *captured) handler(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.headers = append(c.headers, r.Header.Clone())
	c.mu.Unlock()
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "hello from b")
}

func (c *captured) last(t *testing.T) http.Header {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.headers) == 0 {
		t.Fatal("the app got no request")
	}
	return c.headers[len(c.headers)-1]
}

const (
	incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingSpan  = "00f067aa0ba902b7"
)

func get(t *testing.T, c *http.Client, url string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// checkChain verifies the four spans of one hop and returns them by leg.
func checkChain(t *testing.T, ss []*spans.Span, trace, parent string) map[string]*spans.Span {
	t.Helper()
	legs := byLeg(t, ss)
	os, oc, is, ic := legs["outbound-server"], legs["outbound-client"], legs["inbound-server"], legs["inbound-client"]
	if os == nil || oc == nil || is == nil || ic == nil {
		t.Fatalf("missing legs: %v", spanNames(ss))
	}
	for _, s := range ss {
		if got := s.TraceID.String(); trace != "" && got != trace {
			t.Errorf("%s: trace id %s, want %s", attr(s, "hoptrace.leg"), got, trace)
		}
		if s.TraceID != os.TraceID {
			t.Errorf("%s: a different trace", attr(s, "hoptrace.leg"))
		}
		if s.Flags&1 == 0 {
			t.Errorf("%s: sampled flag not set", attr(s, "hoptrace.leg"))
		}
		if !s.Start.Before(s.End) && !s.Start.Equal(s.End) {
			t.Errorf("%s: starts after it ends", attr(s, "hoptrace.leg"))
		}
	}
	if parent == "" {
		if os.ParentID.IsValid() {
			t.Errorf("outbound-server has parent %s, want a root span", os.ParentID)
		}
	} else if os.ParentID.String() != parent {
		t.Errorf("outbound-server parent %s, want the incoming %s", os.ParentID, parent)
	}
	if oc.ParentID != os.SpanID {
		t.Errorf("outbound-client parent %s, want outbound-server %s", oc.ParentID, os.SpanID)
	}
	if is.ParentID != oc.SpanID {
		t.Errorf("inbound-server parent %s, want outbound-client %s", is.ParentID, oc.SpanID)
	}
	if ic.ParentID != is.SpanID {
		t.Errorf("inbound-client parent %s, want inbound-server %s", ic.ParentID, is.SpanID)
	}
	wantKind := map[string]spans.Kind{"outbound-server": spans.KindServer, "outbound-client": spans.KindClient, "inbound-server": spans.KindServer, "inbound-client": spans.KindClient}
	for leg, s := range legs {
		if s.Kind != wantKind[leg] {
			t.Errorf("%s: kind %d, want %d", leg, s.Kind, wantKind[leg])
		}
	}
	// Legs nest in time: each client leg lies within its server leg.
	if oc.Start.Before(os.Start) || oc.End.After(os.End) {
		t.Errorf("outbound-client [%v, %v] outside outbound-server [%v, %v]", oc.Start, oc.End, os.Start, os.End)
	}
	if ic.Start.Before(is.Start) || ic.End.After(is.End) {
		t.Errorf("inbound-client [%v, %v] outside inbound-server [%v, %v]", ic.Start, ic.End, is.Start, is.End)
	}
	return legs
}

// Item 1: a request through both proxies yields exactly four spans with the
// parent chain of docs/proxy.md, and the app sees the inbound-client span as parent.
func TestTraceChainW3C(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	c := newChain(t, appAddr)

	resp := get(t, c.client(), "http://svc-b.test:8080/users/42?token=secret", map[string]string{
		"Traceparent": "00-" + incomingTrace + "-" + incomingSpan + "-01",
		"Tracestate":  "vendor=abc",
		"User-Agent":  "test-client/1.0",
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	legs := checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)

	h := seen.last(t)
	want := "00-" + incomingTrace + "-" + legs["inbound-client"].SpanID.String() + "-01"
	if got := h.Get("Traceparent"); got != want {
		t.Errorf("app got traceparent %q, want %q", got, want)
	}
	if got := h.Get("Tracestate"); got != "vendor=abc" {
		t.Errorf("app got tracestate %q", got)
	}
	for _, k := range []string{"B3", "X-B3-Traceid"} {
		if h.Get(k) != "" {
			t.Errorf("app got %s though only W3C arrived", k)
		}
	}
	for leg, s := range legs {
		if s.TraceState != "vendor=abc" {
			t.Errorf("%s: tracestate %q", leg, s.TraceState)
		}
		if s.Name != "GET" {
			t.Errorf("%s: name %q", leg, s.Name)
		}
		for k, v := range map[string]string{
			"http.request.method":       "GET",
			"http.response.status_code": "200",
			"server.address":            "svc-b.test",
			"server.port":               "8080",
			"network.protocol.version":  "1.1",
		} {
			if got := attr(s, k); got != v {
				t.Errorf("%s: %s = %q, want %q", leg, k, got, v)
			}
		}
		if s.Status != spans.StatusUnset {
			t.Errorf("%s: status %d", leg, s.Status)
		}
		// Conditionally required only when not "http" (HTTP semantic conventions).
		if hasAttr(s, "network.protocol.name") {
			t.Errorf("%s: network.protocol.name set on an HTTP span", leg)
		}
		if s.Resource == nil || s.Resource.ServiceName() == "" {
			t.Errorf("%s: no resource", leg)
		}
		for _, a := range s.Attrs {
			if strings.Contains(a.Str, "secret") {
				t.Errorf("%s: query string leaked into %s", leg, a.Key)
			}
		}
		if len(s.Events) == 0 {
			t.Errorf("%s: no events", leg)
		}
	}
	for _, leg := range []string{"outbound-server", "inbound-server"} {
		s := legs[leg]
		if got := attr(s, "url.path"); got != "/users/42" {
			t.Errorf("%s: url.path %q", leg, got)
		}
		if got := attr(s, "url.scheme"); got != "http" {
			t.Errorf("%s: url.scheme %q", leg, got)
		}
		if got := attr(s, "user_agent.original"); got != "test-client/1.0" {
			t.Errorf("%s: user_agent.original %q", leg, got)
		}
		if attr(s, "network.peer.address") != "127.0.0.1" && leg == "outbound-server" {
			t.Errorf("%s: peer %q", leg, attr(s, "network.peer.address"))
		}
	}
	for _, leg := range []string{"outbound-client", "inbound-client"} {
		if hasAttr(legs[leg], "user_agent.original") {
			t.Errorf("%s: user_agent.original on a client span (opt-in there)", leg)
		}
	}
	if got := attr(legs["inbound-server"], "client.address"); got != "127.0.0.1" {
		t.Errorf("inbound-server client.address %q", got)
	}
	if got := attr(legs["outbound-client"], "url.full"); got != "http://svc-b.test:8080/users/42" {
		t.Errorf("outbound-client url.full %q", got)
	}
	if got := attr(legs["inbound-client"], "network.peer.port"); got != itoa64(int64(appAddr.Port())) {
		t.Errorf("inbound-client peer port %q, want the app's %d", got, appAddr.Port())
	}
}

// Item 1, B3: B3 in, B3 out, nothing else, and the chain still holds.
func TestTraceChainB3(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		// check returns the parent span id the app saw
		parent func(h http.Header) string
	}{
		{
			name: "single",
			hdr:  map[string]string{"B3": incomingTrace + "-" + incomingSpan + "-1"},
			parent: func(h http.Header) string {
				f := strings.Split(h.Get("B3"), "-")
				if len(f) < 3 || f[0] != incomingTrace || f[2] != "1" {
					return "bad b3 " + h.Get("B3")
				}
				return f[1]
			},
		},
		{
			name: "multi",
			hdr:  map[string]string{"X-B3-Traceid": incomingTrace, "X-B3-Spanid": incomingSpan, "X-B3-Sampled": "1"},
			parent: func(h http.Header) string {
				if h.Get("X-B3-Traceid") != incomingTrace || h.Get("X-B3-Sampled") != "1" {
					return "bad x-b3 " + h.Get("X-B3-Traceid")
				}
				return h.Get("X-B3-Spanid")
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen captured
			_, appAddr := app(t, http.HandlerFunc(seen.handler))
			c := newChain(t, appAddr)
			get(t, c.client(), "http://svc-b.test/", tc.hdr)
			legs := checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
			h := seen.last(t)
			if got, want := tc.parent(h), legs["inbound-client"].SpanID.String(); got != want {
				t.Errorf("app's parent span %q, want inbound-client %q", got, want)
			}
			if h.Get("Traceparent") != "" {
				t.Errorf("app got traceparent %q though only B3 arrived", h.Get("Traceparent"))
			}
		})
	}
}

// With no context and a sampler that says yes, the outbound-server span is the root.
func TestTraceStartsRoot(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	c := newChain(t, appAddr, func(dir Direction, cfg *Config) {
		if dir == Outbound {
			cfg.Sampler = spans.NewSampler(1)
		}
	})
	get(t, c.client(), "http://svc-b.test/", nil)
	legs := checkChain(t, c.rec.wait(t, 4), "", "")
	tp := seen.last(t).Get("Traceparent")
	if want := legs["inbound-client"].SpanID.String(); !strings.Contains(tp, want) {
		t.Errorf("app traceparent %q does not name inbound-client %s", tp, want)
	}
}

// Item 2: flag 0 means no spans, but the context still reaches the app: the same
// trace and decision, and (Trace Context Level 2, "Mutating the traceparent
// Field") a fresh parent-id, our span's, as for a sampled request. The
// tracestate goes on with it, here with its repeated key dropped.
func TestUnsampledPropagates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		parent func(h http.Header) (trace, parent, flags string)
	}{
		{
			name: "w3c",
			hdr:  map[string]string{"Traceparent": "00-" + incomingTrace + "-" + incomingSpan + "-00", "Tracestate": "vendor=abc,other=1,vendor=def"},
			parent: func(h http.Header) (string, string, string) {
				f := strings.Split(h.Get("Traceparent"), "-")
				if len(f) != 4 || h.Get("Tracestate") != "vendor=abc,other=1" {
					return "bad traceparent " + h.Get("Traceparent") + " or tracestate " + h.Get("Tracestate"), "", ""
				}
				return f[1], f[2], f[3]
			},
		},
		{
			name: "b3",
			hdr:  map[string]string{"B3": incomingTrace + "-" + incomingSpan + "-0"},
			parent: func(h http.Header) (string, string, string) {
				f := strings.Split(h.Get("B3"), "-")
				if len(f) != 3 {
					return "bad b3 " + h.Get("B3"), "", ""
				}
				return f[0], f[1], f[2]
			},
		},
	} {
		for _, h2 := range []bool{false, true} {
			name := tc.name + "/http1"
			if h2 {
				name = tc.name + "/h2c"
			}
			t.Run(name, func(t *testing.T) {
				var seen captured
				var c *chain
				var client *http.Client
				if h2 {
					c = newChain(t, h2cApp(t, http.HandlerFunc(seen.handler)).AddrPort())
					client = c.h2cClient()
				} else {
					_, appAddr := app(t, http.HandlerFunc(seen.handler))
					c = newChain(t, appAddr)
					client = c.client()
				}
				parents := map[string]bool{}
				for range 3 {
					get(t, client, "http://svc-b.test/", tc.hdr)
					trace, parent, flags := tc.parent(seen.last(t))
					if trace != incomingTrace || flags != "00" && flags != "0" {
						t.Fatalf("app got trace %q flags %q, want the incoming unsampled trace %s", trace, flags, incomingTrace)
					}
					if parent == incomingSpan || len(parent) != 16 || parent == strings.Repeat("0", 16) {
						t.Errorf("app got parent-id %q, want a fresh one, not the incoming %s", parent, incomingSpan)
					}
					parents[parent] = true
				}
				if len(parents) != 3 {
					t.Errorf("three requests reached the app with %d distinct parent-ids", len(parents))
				}
				c.requireNoSpans(t)
			})
		}
	}
}

// requireNoSpans checks that nothing was recorded once the proxies finished
// their requests.
func (c *chain) requireNoSpans(t *testing.T) {
	t.Helper()
	eventually(t, "both proxies to finish", func() bool {
		in, _ := c.inObs.snapshot()
		out, _ := c.outObs.snapshot()
		return len(in) > 0 && len(in) == len(out)
	})
	if ss := c.rec.all(); len(ss) != 0 {
		t.Errorf("unsampled requests recorded %d spans: %v", len(ss), spanNames(ss))
	}
}

// Item 2: without any context and nothing sampled, the decision still travels.
func TestUnsampledNewTracePropagates(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	c := newChain(t, appAddr)
	get(t, c.client(), "http://svc-b.test/", nil)
	tp := seen.last(t).Get("Traceparent")
	if len(tp) != 55 || !(strings.HasSuffix(tp, "-00") || strings.HasSuffix(tp, "-02")) {
		t.Errorf("app got traceparent %q, want a new unsampled context", tp)
	}
	c.requireNoSpans(t)
}

// Item 2: the override header forces a trace and never reaches the app.
func TestOverrideHeaderForcesTrace(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	c := newChain(t, appAddr)
	get(t, c.client(), "http://svc-b.test/", map[string]string{
		"Traceparent":        "00-" + incomingTrace + "-" + incomingSpan + "-00",
		spans.OverrideHeader: "1",
	})
	legs := checkChain(t, c.rec.wait(t, 4), incomingTrace, incomingSpan)
	h := seen.last(t)
	if v, ok := h[spans.OverrideHeader]; ok {
		t.Errorf("app got %s: %q", spans.OverrideHeader, v)
	}
	want := "00-" + incomingTrace + "-" + legs["inbound-client"].SpanID.String() + "-01"
	if got := h.Get("Traceparent"); got != want {
		t.Errorf("app got traceparent %q, want %q", got, want)
	}
}

// Credentials and query strings stay out of spans unless asked for.
func TestSensitiveDataOptIn(t *testing.T) {
	for _, optIn := range []bool{false, true} {
		var seen captured
		_, appAddr := app(t, http.HandlerFunc(seen.handler))
		c := newChain(t, appAddr, func(_ Direction, cfg *Config) {
			if optIn {
				cfg.QueryString = true
				cfg.CaptureHeaders = []string{"authorization", "X-Request-Id", "Content-Type"}
			}
		})
		get(t, c.client(), "http://svc-b.test/login?token=qs-secret", map[string]string{
			"Traceparent":   "00-" + incomingTrace + "-" + incomingSpan + "-01",
			"Authorization": "Bearer auth-secret",
			"Cookie":        "session=cookie-secret",
			"X-Request-Id":  "rid-1",
		})
		ss := c.rec.wait(t, 4)
		leaked := map[string]bool{}
		for _, s := range ss {
			for _, a := range s.Attrs {
				for _, secret := range []string{"qs-secret", "auth-secret", "cookie-secret", "rid-1"} {
					if strings.Contains(a.Str, secret) {
						leaked[secret] = true
					}
				}
			}
		}
		if leaked["cookie-secret"] {
			t.Errorf("optIn=%v: cookie recorded", optIn)
		}
		for _, s := range []string{"qs-secret", "auth-secret", "rid-1"} {
			if leaked[s] != optIn {
				t.Errorf("optIn=%v: %s recorded=%v", optIn, s, leaked[s])
			}
		}
		if optIn {
			s := byLeg(t, ss)["inbound-server"]
			if got := attr(s, "http.request.header.x-request-id"); got != "rid-1" {
				t.Errorf("captured x-request-id %q", got)
			}
			if got := attr(s, "http.response.header.content-type"); got != "text/plain" {
				t.Errorf("captured response content-type %q", got)
			}
			if got := attr(s, "url.query"); got != "token=qs-secret" {
				t.Errorf("url.query %q", got)
			}
		}
	}
}

// SkipTrace requests (kubelet probes) are proxied but never traced.
func TestSkipTrace(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) {
		cfg.SkipTrace = func(r RequestInfo) bool { return strings.HasPrefix(r.UserAgent, "kube-probe/") }
	})
	tp := "00-" + incomingTrace + "-" + incomingSpan + "-01"
	resp := get(t, c.client(), "http://svc-b.test/healthz", map[string]string{"User-Agent": "kube-probe/1.34", "Traceparent": tp, spans.OverrideHeader: "1"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h := seen.last(t)
	if got := h.Get("Traceparent"); got != tp {
		t.Errorf("probe's traceparent changed to %q", got)
	}
	if _, ok := h[spans.OverrideHeader]; ok {
		t.Error("override header reached the app")
	}
	c.requireNoSpans(t)
}

// Route patterns name spans.
func TestRouteNames(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	routes, err := spans.NewRoutes([]string{"/users/{id}"})
	if err != nil {
		t.Fatal(err)
	}
	c := newChain(t, appAddr, func(_ Direction, cfg *Config) { cfg.Routes = routes })
	get(t, c.client(), "http://svc-b.test/users/42", map[string]string{"Traceparent": "00-" + incomingTrace + "-" + incomingSpan + "-01"})
	for _, s := range c.rec.wait(t, 4) {
		if s.Name != "GET /users/{id}" {
			t.Errorf("%s: name %q", attr(s, "hoptrace.leg"), s.Name)
		}
	}
}

// Span status follows the HTTP conventions: 5xx errs everywhere, 4xx only on the
// client legs.
func TestSpanStatusFromHTTPStatus(t *testing.T) {
	for _, code := range []int{404, 503} {
		_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
		}))
		c := newChain(t, appAddr)
		get(t, c.client(), "http://svc-b.test/", map[string]string{"Traceparent": sampledHeader})
		for leg, s := range byLeg(t, c.rec.wait(t, 4)) {
			want := spans.StatusError
			if code < 500 && strings.HasSuffix(leg, "-server") {
				want = spans.StatusUnset
			}
			if s.Status != want || attr(s, "http.response.status_code") != itoa64(int64(code)) {
				t.Errorf("%d %s: status %d, want %d", code, leg, s.Status, want)
			}
		}
	}
}

// Every leg carries the events of its boundaries, in order.
func TestSpanEvents(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	c := newChain(t, appAddr)
	get(t, c.client(), "http://svc-b.test/", map[string]string{"Traceparent": sampledHeader})
	for leg, s := range byLeg(t, c.rec.wait(t, 4)) {
		want := []string{"response.first_byte"}
		if strings.HasSuffix(leg, "-client") {
			want = []string{"wire.send", "response.first_byte"}
		}
		var got []string
		for i, e := range s.Events {
			got = append(got, e.Name)
			if e.Time.Before(s.Start) || e.Time.After(s.End) || i > 0 && e.Time.Before(s.Events[i-1].Time) {
				t.Errorf("%s: event %s at %v outside [%v, %v] or out of order", leg, e.Name, e.Time, s.Start, s.End)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: events %v, want %v", leg, got, want)
		}
	}
}
