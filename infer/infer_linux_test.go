package infer_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/infer"
	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/redirect"
	"github.com/hoptrace/hoptrace/spans"
)

const (
	frontPort = 8080
	backPort  = 8081
)

type spanLog struct {
	mu    sync.Mutex
	spans []*spans.Span
}

func (l *spanLog) Record(s *spans.Span) {
	l.mu.Lock()
	l.spans = append(l.spans, spans.Build(s, new(spans.Span)))
	l.mu.Unlock()
}

func (l *spanLog) snapshot() []*spans.Span {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*spans.Span(nil), l.spans...)
}

// backLog is the back end's own record: the request id each call carried (the
// app sends on its own request id) and the traceparent that reached it.
type backLog struct {
	mu    sync.Mutex
	calls map[string][]string // request id → traceparents
}

// mesh is three simulated pods: a client (not captured), front (captured, its
// app forwards no headers, inference on) and back (not captured: a Go server in
// the test that records what reaches it).
type mesh struct {
	node              *nodebox.Node
	client, front     *nodebox.Pod
	back              *nodebox.Pod
	spans             *spanLog
	backLog           *backLog
	inferrer          *infer.Inferrer
	frontIn, frontOut *proxy.Proxy
}

func newMesh(t *testing.T, withInference bool) *mesh {
	t.Helper()
	testenv.RequirePrivileged(t)
	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	m := &mesh{node: node, spans: &spanLog{}, backLog: &backLog{calls: map[string][]string{}}}
	for _, p := range []**nodebox.Pod{&m.client, &m.front, &m.back} {
		name := map[**nodebox.Pod]string{&m.client: "client", &m.front: "front", &m.back: "back"}[p]
		if *p, err = node.AddPod(name); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := m.back.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", backPort))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		m.backLog.mu.Lock()
		m.backLog.calls[id] = append(m.backLog.calls[id], r.Header.Get("Traceparent"))
		m.backLog.mu.Unlock()
		io.WriteString(w, "back "+id)
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge, for the HTTP/2 test
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	rd, err := redirect.Open(redirect.Config{PinDir: testenv.TempBPFFS(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	att, err := rd.Attach(redirect.Pod{ID: "front", CgroupDir: m.front.CgroupDir, NetnsPath: m.front.NetnsPath})
	if err != nil {
		t.Fatal(err)
	}
	var pod *infer.Pod
	if withInference {
		if m.inferrer, err = infer.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.inferrer.Close() })
		outPort := uint16(att.Outbound.Addr().(*net.TCPAddr).Port)
		if pod, err = m.inferrer.Pod(att.NetnsCookie, outPort); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pod.Close() })
	}
	res := &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", "front")}}
	mk := func(dir proxy.Direction, r proxy.Resolver, d proxy.Dialer) *proxy.Proxy {
		cfg := proxy.Config{Direction: dir, Resolver: r, Dialer: d, Recorder: m.spans,
			Sampler: spans.NewSampler(1), Resource: res, CaptureHeaders: []string{"X-Request-Id"}}
		if pod != nil {
			cfg.Infer = pod
		}
		p, err := proxy.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	m.frontOut = mk(proxy.Outbound, att.OutboundResolver(), att.OutboundDialer())
	m.frontIn = mk(proxy.Inbound, att.InboundResolver(), att.InboundDialer())
	go m.frontOut.Serve(att.Outbound)
	go m.frontIn.Serve(att.Inbound)
	return m
}

// startFront runs a Python app from testdata in the front pod.
func (m *mesh) startFront(t *testing.T, script string, args ...string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		testenv.Unavailable(t, "python3 not installed")
	}
	m.startFrontCmd(t, py, []string{filepath.Join("testdata", script)}, args...)
}

// startFrontCmd runs prog with pre, then the front port and the back end's
// address and port, then args, in the front pod.
func (m *mesh) startFrontCmd(t *testing.T, prog string, pre []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	all := append(append(pre, strconv.Itoa(frontPort), m.back.IPv4.String(), strconv.Itoa(backPort)), args...)
	cmd := m.front.Command(ctx, prog, all...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := m.front.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := m.front.Dial(context.Background(), "tcp4", fmt.Sprintf("127.0.0.1:%d", frontPort))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("front app not listening: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// httpClient sends from the client pod, keeping up to n connections.
func (m *mesh) httpClient(n int) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext:         m.client.Dial,
		MaxIdleConnsPerHost: n,
	}}
}

// load sends total requests with ids prefix-0.. from conc goroutines. Each
// request asks the front for calls back-end calls.
func (m *mesh) load(t *testing.T, prefix string, total, conc, calls int) []string {
	t.Helper()
	hc := m.httpClient(conc)
	url := fmt.Sprintf("http://%s:%d/", m.front.IPv4, frontPort)
	ids := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("X-Request-Id", id)
				req.Header.Set("X-Calls", strconv.Itoa(calls))
				resp, err := hc.Do(req)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && !bytes.HasPrefix(body, []byte("front "+id+" back "+id)) {
						err = fmt.Errorf("status %d body %q", resp.StatusCode, body)
					}
				}
				if err != nil {
					mu.Lock()
					failed = append(failed, id+": "+err.Error())
					mu.Unlock()
				}
			}
		}()
	}
	var all []string
	for i := range total {
		id := fmt.Sprintf("%s-%d", prefix, i)
		all = append(all, id)
		ids <- id
	}
	close(ids)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed, first: %s", len(failed), total, failed[0])
	}
	return all
}

func attr(s *spans.Span, key string) (spans.Attr, bool) {
	for _, a := range s.Attrs {
		if a.Key == key {
			return a, true
		}
	}
	return spans.Attr{}, false
}

// verdicts grades every outbound call of the given requests against ground
// truth: the request id the app sent on names the inbound request that caused
// it. A link is correct when the outbound-server span is parented on that
// request's inbound-client span (and the back end got its trace id).
type verdicts struct {
	calls, linked, wrong int
	wrongs               []string
}

func (m *mesh) grade(t *testing.T, ids []string, callsPer int) verdicts {
	t.Helper()
	// Spans are recorded as each leg finishes, a little after the response.
	var inbound map[string]*spans.Span
	var outbound map[string][]*spans.Span
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		inbound, outbound = map[string]*spans.Span{}, map[string][]*spans.Span{}
		for _, s := range m.spans.snapshot() {
			id, _ := attr(s, "http.request.header.x-request-id")
			leg, _ := attr(s, "hoptrace.leg")
			switch leg.Str {
			case "inbound-client":
				inbound[id.Str] = s
			case "outbound-server":
				outbound[id.Str] = append(outbound[id.Str], s)
			}
		}
		complete := true
		for _, id := range ids {
			if inbound[id] == nil || len(outbound[id]) < callsPer {
				complete = false
				break
			}
		}
		if complete || time.Now().After(deadline) {
			break
		}
	}
	var v verdicts
	m.backLog.mu.Lock()
	defer m.backLog.mu.Unlock()
	for _, id := range ids {
		in := inbound[id]
		if in == nil {
			t.Fatalf("no inbound-client span for %s", id)
		}
		outs := outbound[id]
		if len(outs) != callsPer {
			t.Fatalf("%s: %d outbound-server spans, want %d", id, len(outs), callsPer)
		}
		tps := m.backLog.calls[id]
		for _, o := range outs {
			v.calls++
			a, ok := attr(o, "hoptrace.context.inferred")
			if !ok || !a.Bool {
				continue
			}
			v.linked++
			wantTP := "00-" + in.TraceID.String() + "-"
			gotAtBack := false
			for _, tp := range tps {
				if len(tp) > len(wantTP) && tp[:len(wantTP)] == wantTP {
					gotAtBack = true
				}
			}
			if o.TraceID != in.TraceID || o.ParentID != in.SpanID || !gotAtBack {
				v.wrong++
				v.wrongs = append(v.wrongs, fmt.Sprintf("%s: linked to trace %s parent %s, want %s parent %s (back saw %v)",
					id, o.TraceID, o.ParentID, in.TraceID, in.SpanID, tps))
			}
		}
	}
	return v
}

// Shown: a thread-per-request Python app that forwards no headers, under 1 and
// 8 concurrent requests with random delays and one or two back-end calls each:
// every link made is to the inbound request that caused the call (no wrong
// link), and recall is at least 99%.
func TestPythonThreadedServerLinked(t *testing.T) {
	m := newMesh(t, true)
	m.startFront(t, "threaded_front.py", "0.01")
	for _, c := range []struct {
		conc, total, calls int
	}{{1, 60, 1}, {8, 200, 1}, {8, 100, 2}} {
		name := fmt.Sprintf("c%d-calls%d", c.conc, c.calls)
		before := m.inferrer.Stats()
		ids := m.load(t, name, c.total, c.conc, c.calls)
		v := m.grade(t, ids, c.calls)
		after := m.inferrer.Stats()
		recall := float64(v.linked-v.wrong) / float64(v.calls)
		t.Logf("%s: %d calls, %d linked, %d wrong, recall %.1f%%; counters linked %d ambiguous %d no-data %d",
			name, v.calls, v.linked, v.wrong, 100*recall,
			after.Linked-before.Linked, after.Ambiguous-before.Ambiguous, after.NoData-before.NoData)
		if v.wrong > 0 {
			t.Errorf("%s: %d wrong links: %v", name, v.wrong, v.wrongs)
		}
		if recall < 0.99 {
			t.Errorf("%s: recall %.1f%%, want >= 99%%", name, 100*recall)
		}
		if got := after.Linked - before.Linked; got != uint64(v.linked) {
			t.Errorf("%s: linked counter +%d, spans say %d", name, got, v.linked)
		}
	}
}

// Shown: one thread that reads two requests before making either's call is
// left unlinked, and counted as ambiguous; no call is linked at all.
func TestInterleavedThreadLeftUnlinked(t *testing.T) {
	m := newMesh(t, true)
	m.startFront(t, "interleaved_front.py")
	const pairs = 10
	var ids []string
	for i := range pairs {
		ids = append(ids, m.load(t, fmt.Sprintf("pair%d", i), 2, 2, 1)...)
	}
	v := m.grade(t, ids, 1)
	s := m.inferrer.Stats()
	t.Logf("%d calls, %d linked; counters linked %d ambiguous %d no-data %d, multiplexed reads %d",
		v.calls, v.linked, s.Linked, s.Ambiguous, s.NoData, s.Multiplexed)
	if v.linked != 0 || s.Linked != 0 {
		t.Errorf("%d calls linked (counter %d), want none: %v", v.linked, s.Linked, v.wrongs)
	}
	if s.Ambiguous != uint64(v.calls) {
		t.Errorf("ambiguous counter %d, want every call (%d)", s.Ambiguous, v.calls)
	}
	if s.Multiplexed == 0 {
		t.Error("the kernel never saw the thread read a second request while the first was unanswered")
	}
}

// Shown: with inference loaded, losing the proxies (the agent gone) leaves the
// app's traffic working: capture fails open as before, and the tracing
// programs only observe.
func TestFailOpenWithInference(t *testing.T) {
	m := newMesh(t, true)
	m.startFront(t, "threaded_front.py", "0")
	m.load(t, "before", 5, 1, 1)
	m.frontIn.Close()
	m.frontOut.Close()
	ids := m.load(t, "after", 20, 4, 1)
	m.backLog.mu.Lock()
	defer m.backLog.mu.Unlock()
	for _, id := range ids {
		if len(m.backLog.calls[id]) != 1 {
			t.Fatalf("%s reached the back end %d times", id, len(m.backLog.calls[id]))
		}
	}
}

// Shown: a Go net/http app that forwards no headers is never linked: a Go
// thread's last request says nothing about the goroutine writing on it. Every
// call is counted as ambiguous or no-data.
func TestGoAppNeverLinked(t *testing.T) {
	m := newMesh(t, true)
	bin := filepath.Join(t.TempDir(), "gofront")
	build := exec.Command("go", "build", "-o", bin, "./testdata/gofront")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gofront: %v\n%s", err, out)
	}
	m.startFrontCmd(t, bin, nil, "0.005")
	var ids []string
	for _, c := range []struct{ conc, total int }{{1, 40}, {8, 120}} {
		ids = append(ids, m.load(t, fmt.Sprintf("go-c%d", c.conc), c.total, c.conc, 1)...)
	}
	v := m.grade(t, ids, 1)
	s := m.inferrer.Stats()
	t.Logf("%d calls, %d linked; counters linked %d ambiguous %d no-data %d",
		v.calls, v.linked, s.Linked, s.Ambiguous, s.NoData)
	if v.linked != 0 || s.Linked != 0 {
		t.Errorf("%d calls linked (counter %d, %d wrong), want none: %v", v.linked, s.Linked, v.wrong, v.wrongs)
	}
	if s.Ambiguous+s.NoData != uint64(v.calls) {
		t.Errorf("ambiguous %d + no-data %d, want every call (%d) counted", s.Ambiguous, s.NoData, v.calls)
	}
}

// Shown: an outbound HTTP/2 request without context from a pod with inference
// is not linked (the relay has no per-request byte offset) but counted.
func TestHTTP2CountedNotLinked(t *testing.T) {
	m := newMesh(t, true)
	curl := lookPath(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		cmd := m.front.Command(ctx, curl, "-sf", "--http2-prior-knowledge", "-H", fmt.Sprintf("X-Request-Id: h2-%d", i),
			fmt.Sprintf("http://%s:%d/", m.back.IPv4, backPort))
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := m.front.Run(cmd); err != nil || out.String() != fmt.Sprintf("back h2-%d", i) {
			t.Fatalf("curl over h2c: %q %v", out.String(), err)
		}
	}
	s := m.inferrer.Stats()
	if s.Linked != 0 || s.NoData != 3 {
		t.Errorf("linked %d, no-data %d; want 0 and 3", s.Linked, s.NoData)
	}
	for _, sp := range m.spans.snapshot() {
		if a, ok := attr(sp, "hoptrace.context.inferred"); ok && a.Bool {
			t.Errorf("HTTP/2 span marked inferred: %s", sp.Name)
		}
	}
}
