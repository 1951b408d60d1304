package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hoptrace/hoptrace/spans"
)

// countOutcomes counts the sampling outcomes an observer saw.
func (o *observer) countOutcomes() map[spans.Outcome]int {
	reqs, _ := o.snapshot()
	n := map[spans.Outcome]int{}
	for _, r := range reqs {
		n[r.Sampling]++
	}
	return n
}

// askedLimiter counts how often a limiter is asked.
type askedLimiter struct {
	spans.Limiter
	asked atomic.Int64
}

func (l *askedLimiter) Allow() bool {
	l.asked.Add(1)
	return l.Limiter.Allow()
}

// 10,000 requests that each force a trace (half with hoptrace-sample, half with
// a bare B3 debug) record at most what the pod's token bucket allows, rate ×
// elapsed + burst, and every refusal is reported. The traces that do start
// are whole: the next hop follows the decision without asking its own bucket.
func TestForcedTracesAreRateLimited(t *testing.T) {
	const (
		requests = 10000
		workers  = 8
		rate     = 100.0
		burst    = 100
	)
	_, appAddr := app(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	podA := &askedLimiter{Limiter: spans.NewTokenBucket(rate, burst)}
	podB := &askedLimiter{Limiter: spans.NewTokenBucket(rate, burst)}
	c := newChain(t, appAddr, func(dir Direction, cfg *Config) {
		cfg.ForcedTraces = podA
		if dir == Inbound {
			cfg.ForcedTraces = podB
		}
	})
	tr := c.transport()
	tr.MaxIdleConnsPerHost = workers
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > requests {
					return
				}
				if time.Now().After(deadline) {
					errs <- io.ErrUnexpectedEOF
					return
				}
				req, _ := http.NewRequest(http.MethodGet, "http://svc-b.test/", nil)
				if i%2 == 0 {
					req.Header.Set(spans.OverrideHeader, "1")
				} else {
					req.Header.Set("B3", "d")
				}
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- io.ErrUnexpectedEOF
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatalf("a request failed (or the run passed its deadline): %v", err)
	}
	eventually(t, "both proxies to report every request", func() bool {
		in, _ := c.inObs.snapshot()
		out, _ := c.outObs.snapshot()
		return len(in) == requests && len(out) == requests
	})

	limit := int(rate*elapsed.Seconds()) + burst
	got := c.outObs.countOutcomes()
	forced, refused := got[spans.OutcomeForced], got[spans.OutcomeRefused]
	traces := map[spans.TraceID]int{}
	for _, s := range c.rec.all() {
		traces[s.TraceID]++
	}
	t.Logf("%d requests in %v: %d traces, %d forced, %d refused; limit %d", requests, elapsed, len(traces), forced, refused, limit)
	if len(traces) > limit {
		t.Errorf("%d traces recorded in %v, above the limit rate × elapsed + burst = %d", len(traces), elapsed, limit)
	}
	if len(traces) < burst {
		t.Errorf("%d traces recorded, fewer than the burst %d", len(traces), burst)
	}
	if forced != len(traces) || forced+refused != requests {
		t.Errorf("outcomes %v: want %d forced (the traces) and the other %d refused", got, len(traces), requests-len(traces))
	}
	for id, n := range traces {
		if n != 4 {
			t.Errorf("trace %v has %d spans, want all 4", id, n)
			break
		}
	}
	if n := podA.asked.Load(); n != requests {
		t.Errorf("pod A's bucket was asked %d times, want once per request (%d)", n, requests)
	}
	if n := podB.asked.Load(); n != 0 {
		t.Errorf("pod B's bucket was asked %d times: the hop after a forced trace must follow it, not force again", n)
	}
	if in := c.inObs.countOutcomes(); in[spans.OutcomeRefused]+in[spans.OutcomeForced]+in[spans.OutcomeUntrusted] != 0 {
		t.Errorf("inbound outcomes %v, want none", in)
	}
}

// clientFrom returns HTTP/1.1 and h2c clients whose connections come from src
// and go to addr.
func clientFrom(src netip.Addr, addr string, h2 bool) *http.Client {
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	if h2 {
		return &http.Client{Transport: &http2.Transport{
			AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		}}
	}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// Sampling headers from outside the mesh neither decide nor force a trace; the
// same from inside the mesh do; a proxy without a trust rule (the agent's
// --trust-external-sampling) believes everyone. The trace id always carries on,
// and what the app gets never forces anything either.
func TestUntrustedSamplingIgnored(t *testing.T) {
	var (
		mesh     = netip.MustParseAddr("127.0.0.1")
		external = netip.MustParseAddr("127.0.0.2")
	)
	signals := []struct {
		name string
		hdr  map[string]string
	}{
		{"traceparent sampled", map[string]string{"Traceparent": sampledHeader}},
		{"hoptrace-sample", map[string]string{spans.OverrideHeader: "1"}},
		{"hoptrace-sample on an unsampled parent", map[string]string{"Traceparent": "00-" + incomingTrace + "-" + incomingSpan + "-00", spans.OverrideHeader: "1"}},
		{"b3 sampled", map[string]string{"B3": incomingTrace + "-" + incomingSpan + "-1"}},
		{"b3 debug", map[string]string{"B3": incomingTrace + "-" + incomingSpan + "-d"}},
		{"bare b3 debug", map[string]string{"B3": "d"}},
		{"X-B3 sampled", map[string]string{"X-B3-Traceid": incomingTrace, "X-B3-Spanid": incomingSpan, "X-B3-Sampled": "1"}},
		{"X-B3 debug", map[string]string{"X-B3-Traceid": incomingTrace, "X-B3-Spanid": incomingSpan, "X-B3-Flags": "1"}},
		{"bare X-B3 debug", map[string]string{"X-B3-Flags": "1"}},
	}
	for _, proto := range []string{"http1", "h2c"} {
		var seen captured
		var appAddr netip.AddrPort
		if proto == "h2c" {
			appAddr = h2cApp(t, http.HandlerFunc(seen.handler)).AddrPort()
		} else {
			_, appAddr = app(t, http.HandlerFunc(seen.handler))
		}
		for _, trust := range []string{"mesh only", "everyone"} {
			rec, obs := &recorder{}, &observer{}
			cfg := Config{
				Direction: Inbound,
				Resolver:  fixedResolver(appAddr),
				Dialer:    &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 6)}},
				Recorder:  rec,
				Sampler:   spans.NewSampler(0),
				Observer:  obs,
			}
			var asked atomic.Int64
			if trust == "mesh only" {
				cfg.TrustSampling = func(peer netip.Addr) bool { asked.Add(1); return peer == mesh }
			}
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ln := start(t, p)
			for _, from := range []netip.Addr{mesh, external} {
				client := clientFrom(from, ln.Addr().String(), proto == "h2c")
				for _, sig := range signals {
					t.Run(proto+"/"+trust+"/"+from.String()+"/"+sig.name, func(t *testing.T) {
						rec.reset()
						nreq, _ := obs.snapshot()
						get(t, client, "http://svc-b.test/", sig.hdr)
						eventually(t, "the request to be reported", func() bool {
							r, _ := obs.snapshot()
							return len(r) == len(nreq)+1
						})
						reqs, _ := obs.snapshot()
						outcome := reqs[len(reqs)-1].Sampling
						h := seen.last(t)
						got, ok := spans.Extract(h)

						believed := trust == "everyone" || from == mesh
						if believed {
							rec.wait(t, 2)
							if !ok || !got.Sampled {
								t.Errorf("app got %+v from %v, want a sampled context", got, h)
							}
						} else {
							// Spans are recorded before the request is reported.
							if ss := rec.all(); len(ss) != 0 {
								t.Errorf("untrusted %s recorded %d spans", sig.name, len(ss))
							}
							if outcome != spans.OutcomeUntrusted {
								t.Errorf("outcome %v, want %v", outcome, spans.OutcomeUntrusted)
							}
							if !ok || got.Sampled || got.Debug {
								t.Errorf("app got %+v from %v, want an unsampled context without debug", got, h)
							}
						}
						if _, present := h[spans.OverrideHeader]; present {
							t.Errorf("%s reached the app", spans.OverrideHeader)
						}
						if strings.Contains(sig.name, "bare") || sig.name == "hoptrace-sample" {
							return // a new trace
						}
						if got.TraceID.String() != incomingTrace {
							t.Errorf("app got trace %v, want the incoming %s kept", got.TraceID, incomingTrace)
						}
					})
				}
				client.CloseIdleConnections()
			}
			if trust == "mesh only" {
				if n := asked.Load(); n != 2 {
					t.Errorf("%s: TrustSampling asked %d times for 2 connections", proto, n)
				}
			}
		}
	}
}

// An outbound proxy's client is the pod's own app, inside the mesh: no trust
// rule applies to it.
func TestOutboundAlwaysTrusted(t *testing.T) {
	var seen captured
	_, appAddr := app(t, http.HandlerFunc(seen.handler))
	var asked atomic.Int64
	c := newChain(t, appAddr, func(dir Direction, cfg *Config) {
		if dir == Outbound {
			cfg.TrustSampling = func(netip.Addr) bool { asked.Add(1); return false }
		}
	})
	get(t, c.client(), "http://svc-b.test/", map[string]string{spans.OverrideHeader: "1"})
	checkChain(t, c.rec.wait(t, 4), "", "")
	if n := asked.Load(); n != 0 {
		t.Errorf("TrustSampling asked %d times on the outbound side", n)
	}
}
