package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hoptrace/hoptrace/agent"
	"github.com/hoptrace/hoptrace/internal/jaegertest"
	"github.com/hoptrace/hoptrace/internal/testenv"
)

var binDir string

// TestMain builds the real binaries once: the tests run them as processes, the
// way a user does.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 && !testenv.Required() {
		os.Exit(m.Run()) // every test skips
	}
	dir, err := os.MkdirTemp("", "hoptrace-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, pkg := range []string{"hoptrace", "sampleapp"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "github.com/hoptrace/hoptrace/cmd/"+pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func up(t *testing.T, otlp string, agentArgs ...string) *Env {
	t.Helper()
	testenv.RequirePrivileged(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	work := t.TempDir()
	env, err := Up(ctx, Config{BinDir: binDir, WorkDir: work, OTLPEndpoint: otlp, AgentArgs: agentArgs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(work, "agent.log")); err == nil {
				t.Logf("agent log:\n%s", tailLines(string(b), 40))
			}
		}
		if err := env.Close(); err != nil {
			t.Errorf("close demo: %v", err)
		}
	})
	return env
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hop is what one span of the demo's trace must be, in parent-chain order.
type hop struct{ service, leg, kind string }

var wantChain = []hop{
	{"client", "outbound-server", "server"}, {"client", "outbound-client", "client"},
	{"hello", "inbound-server", "server"}, {"hello", "inbound-client", "client"},
	{"hello", "outbound-server", "server"}, {"hello", "outbound-client", "client"},
	{"world", "inbound-server", "server"}, {"world", "inbound-client", "client"},
	{"world", "outbound-server", "server"}, {"world", "outbound-client", "client"},
	{"emoji", "inbound-server", "server"}, {"emoji", "inbound-client", "client"},
}

// Shown: Jaeger holds one trace per client request spanning all services, 4 spans
// per hop with the right parentage, attributes and resources; `hoptrace flows -o
// json` lists the flows with their original destinations; --capture-header and
// --record-query put a header the client sent, the responses' content type
// and the query on the spans they concern, and nowhere else.
func TestDemoTopologyTraces(t *testing.T) {
	j := jaegertest.Start(t)
	env := up(t, "http://"+j.OTLPGRPCAddr, "--self-trace",
		"--capture-header=x-demo-tenant", "--capture-header=content-type", "--record-query")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const requests = 3
	for i := range requests {
		out, err := env.RequestURL(ctx, env.HelloURL()+"?color=blue", "X-Demo-Tenant: acme")
		if err != nil || !strings.HasPrefix(out, "hello world ") {
			t.Fatalf("request %d: %q, %v", i, out, err)
		}
	}

	traces := completeTraces(t, j, "client", requests, len(wantChain))
	if len(traces) != requests {
		t.Fatalf("%d traces for %d requests", len(traces), requests)
	}
	for _, tr := range traces {
		checkChain(t, env, tr)
		checkRecorded(t, tr)
	}

	// --self-trace: the agent's own pod attaches are in Jaeger as hoptrace-agent.
	agentTraces, err := j.Traces("hoptrace-agent")
	if err != nil {
		t.Fatal(err)
	}
	attached := map[string]bool{}
	for _, tr := range agentTraces {
		for _, s := range tr.Spans {
			if s.OperationName == "hoptrace.pod.attach" {
				pod, _ := s.Tag("k8s.pod.name")
				attached[pod] = true
			}
		}
	}
	for _, pod := range []string{"client", "hello", "world", "emoji"} {
		if !attached[pod] {
			t.Errorf("no hoptrace.pod.attach span for %s in Jaeger (self-tracing)", pod)
		}
	}

	out, err := exec.Command(filepath.Join(binDir, "hoptrace"), "flows", "-o", "json", "--admin-socket", env.AdminSocket).Output()
	if err != nil {
		t.Fatalf("hoptrace flows: %v", err)
	}
	var report agent.FlowsReport
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("flows json: %v\n%s", err, out)
	}
	wantDst := map[string]string{
		"demo/client outbound": fmt.Sprintf("%s:%d", env.Pods["hello"].IPv4, HelloPort),
		"demo/hello inbound":   fmt.Sprintf("%s:%d", env.Pods["hello"].IPv4, HelloPort),
		"demo/hello outbound":  fmt.Sprintf("%s:%d", env.Pods["world"].IPv4, WorldPort),
		"demo/world inbound":   fmt.Sprintf("%s:%d", env.Pods["world"].IPv4, WorldPort),
		"demo/world outbound":  fmt.Sprintf("%s:%d", env.Pods["emoji"].IPv4, EmojiPort),
		"demo/emoji inbound":   fmt.Sprintf("%s:%d", env.Pods["emoji"].IPv4, EmojiPort),
	}
	seen := map[string]bool{}
	for _, f := range report.Flows {
		key := f.Pod + " " + f.Direction
		if want, ok := wantDst[key]; ok && f.Dst == want && f.Redirected && f.Requests > 0 {
			seen[key] = true
		}
	}
	for key, dst := range wantDst {
		if !seen[key] {
			t.Errorf("flows: no redirected %s flow to %s in %s", key, dst, out)
		}
	}

	// Captured connections are kernel counters, not events: the metric must
	// still count them (three hops: three redirected, three captured at least).
	metrics := adminMetrics(t, env.AdminSocket)
	for _, series := range []string{
		`hoptrace_redirect_events_total{direction="outbound",reason="redirected"}`,
		`hoptrace_redirect_events_total{direction="inbound",reason="captured"}`,
	} {
		if n := metricValue(metrics, series); n < 3 {
			t.Errorf("%s = %v, want >= 3", series, n)
		}
	}
	if n := metricValue(metrics, "hoptrace_redirect_events_lost_total"); n != 0 {
		t.Errorf("hoptrace_redirect_events_lost_total = %v", n)
	}
}

// adminMetrics scrapes the agent's /metrics over its admin socket.
func adminMetrics(t *testing.T, socket string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	resp, err := c.Get("http://agent/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// metricValue finds one series in a Prometheus text exposition (-1: absent).
func metricValue(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// completeTraces waits up to 30 s for Jaeger to hold n traces of service with
// spans spans each, and returns service's traces.
func completeTraces(t *testing.T, j *jaegertest.Jaeger, service string, n, spans int) []jaegertest.Trace {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		traces, err := j.Traces(service)
		complete := 0
		for _, tr := range traces {
			if len(tr.Spans) == spans {
				complete++
			}
		}
		if err == nil && complete == n {
			return traces
		}
		if time.Now().After(deadline) {
			sizes := []int{}
			for _, tr := range traces {
				sizes = append(sizes, len(tr.Spans))
			}
			t.Fatalf("Jaeger has %d traces of %v spans (%v), want %d complete ones of %d spans", len(traces), sizes, err, n, spans)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func checkChain(t *testing.T, env *Env, tr jaegertest.Trace) {
	t.Helper()
	// Order spans by walking parent links from the root.
	byParent := map[string]jaegertest.Span{}
	var root *jaegertest.Span
	for i, s := range tr.Spans {
		if p := s.ParentID(); p == "" {
			root = &tr.Spans[i]
		} else {
			if _, dup := byParent[p]; dup {
				t.Errorf("trace %s: span %s has two children", tr.TraceID, p)
			}
			byParent[p] = s
		}
	}
	if root == nil {
		t.Fatalf("trace %s has no root span", tr.TraceID)
	}
	s := *root
	for i, want := range wantChain {
		proc := tr.Process(s)
		leg, _ := s.Tag("hoptrace.leg")
		if proc.ServiceName != want.service || leg != want.leg || s.Kind() != want.kind {
			t.Fatalf("trace %s span %d: %s %s %s, want %+v", tr.TraceID, i, proc.ServiceName, leg, s.Kind(), want)
		}
		if ns, _ := proc.Tag("k8s.namespace.name"); ns != "demo" {
			t.Errorf("span %d: k8s.namespace.name %q", i, ns)
		}
		if pod, _ := proc.Tag("k8s.pod.name"); pod != want.service {
			t.Errorf("span %d: k8s.pod.name %q, want %q", i, pod, want.service)
		}
		if node, _ := proc.Tag("k8s.node.name"); node != "nodebox-"+env.Node.ID {
			t.Errorf("span %d: k8s.node.name %q", i, node)
		}
		if i < 8 {
			if m, _ := s.Tag("http.request.method"); m != "GET" {
				t.Errorf("span %d (%s): http.request.method %q", i, leg, m)
			}
			if code, _ := s.Tag("http.response.status_code"); code != "200" {
				t.Errorf("span %d (%s): http.response.status_code %q", i, leg, code)
			}
		} else {
			if sys, _ := s.Tag("rpc.system"); sys != "grpc" {
				t.Errorf("span %d (%s): rpc.system %q", i, leg, sys)
			}
			if m, _ := s.Tag("rpc.method"); m != "Random" {
				t.Errorf("span %d (%s): rpc.method %q", i, leg, m)
			}
			if code, _ := s.Tag("rpc.grpc.status_code"); code != "0" {
				t.Errorf("span %d (%s): rpc.grpc.status_code %q", i, leg, code)
			}
		}
		if i == len(wantChain)-1 {
			if _, more := byParent[s.SpanID]; more {
				t.Errorf("trace %s: more spans than the chain", tr.TraceID)
			}
			break
		}
		next, ok := byParent[s.SpanID]
		if !ok {
			t.Fatalf("trace %s: span %d (%s %s) has no child", tr.TraceID, i, want.service, want.leg)
		}
		// One clock times every leg: a child lies within its parent (to within
		// the 2µs that Jaeger's separate rounding of start and duration allows).
		const slack = 2
		if next.StartTime < s.StartTime-slack || next.StartTime+next.Duration > s.StartTime+s.Duration+slack {
			t.Errorf("trace %s: span %d (%s) [%d, +%dµs] is not within its parent %s [%d, +%dµs]", tr.TraceID, i+1,
				wantChain[i+1].leg, next.StartTime, next.Duration, want.leg, s.StartTime, s.Duration)
		}
		s = next
	}
}

// checkRecorded checks what --capture-header=x-demo-tenant,content-type and
// --record-query add to a trace of the request "/?color=blue" with
// "X-Demo-Tenant: acme": the header and the query on the client -> hello hop
// only (hello forwards neither), every response's content type on every leg.
func checkRecorded(t *testing.T, tr jaegertest.Trace) {
	t.Helper()
	for _, s := range tr.Spans {
		svc := tr.Process(s).ServiceName
		leg, _ := s.Tag("hoptrace.leg")
		firstHop := svc == "client" || svc == "hello" && strings.HasPrefix(leg, "inbound-")
		tenant, hasTenant := s.Tag("http.request.header.x-demo-tenant")
		query, hasQuery := s.Tag("url.query")
		full, _ := s.Tag("url.full")
		switch {
		case firstHop && tenant != "acme":
			t.Errorf("%s %s: http.request.header.x-demo-tenant %q, want acme", svc, leg, tenant)
		case !firstHop && hasTenant:
			t.Errorf("%s %s: http.request.header.x-demo-tenant %q on a hop that never carried it", svc, leg, tenant)
		}
		switch {
		case firstHop && strings.HasSuffix(leg, "-server") && query != "color=blue":
			t.Errorf("%s %s: url.query %q, want color=blue", svc, leg, query)
		case firstHop && strings.HasSuffix(leg, "-client") && !strings.HasSuffix(full, "/?color=blue"):
			t.Errorf("%s %s: url.full %q, want it to end in /?color=blue", svc, leg, full)
		case !firstHop && hasQuery:
			t.Errorf("%s %s: url.query %q on a hop without a query", svc, leg, query)
		}
		if ct, _ := s.Tag("http.response.header.content-type"); ct == "" {
			t.Errorf("%s %s: no http.response.header.content-type", svc, leg)
		}
	}
}

// Shown: kill -9 of the agent during traffic: requests keep succeeding; a
// restarted agent captures again within a second of being ready, with no BPF
// program attached twice. The collector is absent throughout: a missing
// collector neither breaks nor stops the agent.
func TestAgentKill9DuringTraffic(t *testing.T) {
	env := up(t, "http://127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var mu sync.Mutex
	var failures []string
	request := func(label string) {
		out, err := env.Request(ctx)
		if err != nil || !strings.HasPrefix(out, "hello world ") {
			mu.Lock()
			failures = append(failures, fmt.Sprintf("%s: %q %v", label, out, err))
			mu.Unlock()
		}
	}
	for i := range 5 {
		request(fmt.Sprintf("before kill %d", i))
	}
	if err := env.StopAgent(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		request(fmt.Sprintf("agent dead %d", i))
	}
	if err := env.StartAgent(ctx); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	if err := env.WaitCaptured(ctx, len(podNames)); err != nil {
		t.Fatal(err)
	}
	before := countClientFlows(t, env)
	request("after restart")
	if n := countClientFlows(t, env); n <= before {
		t.Errorf("the restarted agent did not capture the client's request (flows %d → %d)", before, n)
	}
	if d := time.Since(ready); d > time.Second {
		t.Errorf("capture resumed %s after the agent was ready, want under 1s", d)
	}
	for i := range 5 {
		request(fmt.Sprintf("after restart %d", i))
	}
	if len(failures) > 0 {
		t.Errorf("%d requests failed:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	checkSingleAttachment(t, env)
}

func countClientFlows(t *testing.T, env *Env) int64 {
	t.Helper()
	flows, err := agent.NewClient(env.AdminSocket).Flows(context.Background(), "demo/client")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range flows {
		if f.Direction == "outbound" && f.Redirected {
			n += f.Requests
		}
	}
	return n
}

// checkSingleAttachment asserts each pod has exactly one of each hoptrace program.
func checkSingleAttachment(t *testing.T, env *Env) {
	t.Helper()
	for name, p := range env.Pods {
		cg, err := os.Open(p.CgroupDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupSockOps} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Programs) != 1 {
				t.Errorf("pod %s: %d %v programs, want 1", name, len(res.Programs), at)
			}
		}
		cg.Close()
		ns, err := os.Open(p.NetnsPath)
		if err != nil {
			t.Fatal(err)
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(ns.Fd()), Attach: ebpf.AttachSkLookup})
		ns.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Programs) != 1 {
			t.Errorf("pod %s: %d sk_lookup programs, want 1", name, len(res.Programs))
		}
	}
}

// Shown: SIGTERM removes every program, link and pin; the apps keep working.
func TestAgentShutdownRemovesEverything(t *testing.T) {
	env := up(t, "http://127.0.0.1:1")
	if err := env.StopAgent(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env.PinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin dir %s still exists after SIGTERM", env.PinDir)
	}
	for name, p := range env.Pods {
		cg, _ := os.Open(p.CgroupDir)
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: ebpf.AttachCGroupInet4Connect})
		cg.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Programs) != 0 {
			t.Errorf("pod %s: %d connect4 programs left", name, len(res.Programs))
		}
	}
	if out, err := env.Request(context.Background()); err != nil || !strings.HasPrefix(out, "hello world ") {
		t.Errorf("request without agent: %q %v", out, err)
	}
}

// Shown: a pods file with errors names the entry and leaves the other pods
// alone; a pod whose netns disappears is released and reported, and the agent
// keeps going.
func TestAgentBadPodsAndVanishedNetns(t *testing.T) {
	env := up(t, "http://127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	good, err := os.ReadFile(env.PodsFile)
	if err != nil {
		t.Fatal(err)
	}
	bad := string(good) + "- name: ghost\n  namespace: demo\n  netns: /run/netns/ht-no-such-netns\n  cgroup: " + env.Pods["client"].CgroupDir + "\n- name: nocgroup\n  netns: /run/netns/x\n"
	if err := os.WriteFile(env.PodsFile, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	c := agent.NewClient(env.AdminSocket)
	waitFor(t, 15*time.Second, func() (bool, string) {
		r, err := c.Pods(ctx)
		if err != nil {
			return false, err.Error()
		}
		var ghost *agent.PodInfo
		attached := 0
		for i, p := range r.Pods {
			if p.Name == "ghost" {
				ghost = &r.Pods[i]
			}
			if p.State == "attached" {
				attached++
			}
		}
		named := false
		for _, p := range r.Problems {
			// The pods file's entries: the demo's pods, then ghost, then nocgroup.
			entry := fmt.Sprintf("entry %d", len(podNames)+2)
			if strings.Contains(p, entry) && strings.Contains(p, "nocgroup") && strings.Contains(p, "cgroup") {
				named = true
			}
		}
		ok := ghost != nil && ghost.State == "failed" && strings.Contains(ghost.Error, "network namespace not found") && named && attached == len(podNames)
		return ok, fmt.Sprintf("%+v", r)
	})
	if out, err := env.Request(ctx); err != nil || !strings.HasPrefix(out, "hello world ") {
		t.Fatalf("request with a bad pods file: %q %v", out, err)
	}

	// The emoji pod's netns vanishes (its pod is deleted behind the agent's back).
	if err := env.Node.RemovePod("emoji"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		r, err := c.Pods(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range r.Pods {
			if p.Name == "emoji" && p.State == "attached" {
				return false, "emoji still attached"
			}
		}
		return true, ""
	})
	// The agent keeps serving the others: hello still answers, with world's
	// complaint that emoji is unreachable.
	out, err := env.Request(ctx)
	if err != nil || !strings.HasPrefix(out, "world: ") {
		t.Errorf("request after emoji vanished: %q %v, want hello's error answer", out, err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Errorf("agent not ready after a pod vanished: %v", err)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %s", d, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Shown: the CLI with no agent says so clearly and exits with code 3.
func TestCLIWithoutAgent(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, args := range [][]string{{"pods"}, {"flows"}, {"flows", "--watch"}} {
		cmd := exec.Command(filepath.Join(binDir, "hoptrace"), append(args, "--admin-socket", filepath.Join(t.TempDir(), "none.sock"))...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("%v: exit %v, want 3\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "no hoptrace agent is running") {
			t.Errorf("%v: output %q does not say that no agent runs", args, out)
		}
	}
}

// Shown: `hoptrace await-capture`, the init-container gate, returns once the
// agent captures its pod, and otherwise fails (or, with --fail-open, lets the
// app start) after its timeout.
func TestAwaitCapture(t *testing.T) {
	env := up(t, "http://127.0.0.1:1")
	run := func(p string, args ...string) (int, string) {
		pod := env.Pods[p]
		if pod == nil {
			var err error
			if pod, err = env.Node.AddPod(p); err != nil {
				t.Fatal(err)
			}
			env.Pods[p] = pod
		}
		cmd := exec.Command(filepath.Join(binDir, "hoptrace"), append([]string{"await-capture"}, args...)...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		err := pod.Run(cmd)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	}
	if code, out := run("hello", "--timeout", "5s"); code != 0 || !strings.Contains(out, "captured") {
		t.Errorf("captured pod: exit %d, %q", code, out)
	}
	if code, out := run("loner", "--timeout", "300ms"); code != 1 || !strings.Contains(out, "did not capture") {
		t.Errorf("uncaptured pod: exit %d, %q", code, out)
	}
	if code, _ := run("loner", "--timeout", "300ms", "--fail-open"); code != 0 {
		t.Errorf("uncaptured pod with --fail-open: exit %d", code)
	}
}
