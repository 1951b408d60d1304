//go:build e2e

// Package e2e tests hoptrace on a real Kubernetes cluster: whichever KUBECONFIG
// points at (scripts/cluster-up.sh's local node, or kind via
// scripts/kind-e2e.sh), with the same assertions.
//
// The images hoptrace/{hoptrace,sampleapp,jaeger,e2e-nodeprobe}:$HOPTRACE_E2E_IMAGE_TAG
// must be loaded into the nodes (scripts/image.sh import, kind load
// image-archive). Run:
//
//	KUBECONFIG=... go test -tags e2e -count=1 -timeout 20m -v ./test/e2e/
//
// Environment: HOPTRACE_E2E_IMAGE_TAG (dev), HOPTRACE_E2E_PIN_DIR
// (/sys/fs/bpf/hoptrace), HOPTRACE_E2E_CGROUP2_PATH (/sys/fs/cgroup; the
// nodes' cgroup v2 mount), HOPTRACE_E2E_HELM_ARGS (more helm install
// arguments), HOPTRACE_E2E_KEEP=1 (leave everything installed), KUBECTL, HELM.
package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hoptrace/hoptrace/internal/jaegertest"
)

// The sample application: client → hello (HTTP) → world (HTTP) → emoji (gRPC),
// each call by Service name through cluster DNS.
var (
	helloApp = app{name: "hello", args: []string{"hello", "--listen", ":8080", "--world", "http://world:8080"}, port: 8080, httpProbe: true}
	worldApp = app{name: "world", args: []string{"world", "--listen", ":8080", "--emoji", "emoji:9090"}, port: 8080}
	emojiApp = app{name: "emoji", args: []string{"emoji", "--listen", ":9090"}, port: 9090}
)

func clientApp(name, target string, interval time.Duration, count int) app {
	return app{name: name, args: []string{"client", "--target", target, "--interval", interval.String(), "--count", fmt.Sprint(count)}}
}

func TestE2E(t *testing.T) {
	e := loadEnv(t)
	nodes := e.nodes(t)
	if len(nodes) == 0 {
		t.Fatal("the cluster has no nodes")
	}
	t.Logf("cluster: %d node(s); images tag %s; pin dir %s; cgroup2 %s", len(nodes), e.imageTag, e.pinDir, e.cgroup2Path)

	if !e.keep {
		// Reverse order: apps first (their pods stop while the agent still runs,
		// as in a real cluster), then the agent, then Jaeger.
		t.Cleanup(func() {
			e.deleteNamespace(t, tracingNS)
			e.deleteNamespace(t, agentNS)
		})
		t.Cleanup(func() {
			ctx := ctxT(t, 3*time.Minute)
			_, _ = e.run(ctx, e.helm, "uninstall", release, "-n", agentNS, "--wait", "--ignore-not-found")
		})
		t.Cleanup(func() { e.deleteNamespace(t, appNS) })
	}

	// Jaeger, the backend of the seeds, from the example manifest.
	e.kubectlRun(t, time.Minute, "apply", "-f", e.path("deploy/examples/jaeger.yaml"))
	e.kubectlRun(t, 2*time.Minute, "-n", tracingNS, "set", "image", "deploy/jaeger", "jaeger="+e.image("jaeger"))
	e.waitDeploymentReady(t, tracingNS, "jaeger", 3*time.Minute)

	// Pods that exist before the agent: emoji and hello. They make no
	// connection until traffic arrives, which happens only after the agent.
	e.createNamespace(t, appNS)
	svcHello := e.createService(t, "hello", 8080, "")
	e.createService(t, "world", 8080, "")
	e.createService(t, "emoji", 9090, "grpc")
	e.createDeployment(t, emojiApp)
	e.createDeployment(t, helloApp)
	e.waitDeploymentReady(t, appNS, "emoji", 2*time.Minute)
	e.waitDeploymentReady(t, appNS, "hello", 2*time.Minute)

	// Every manifest we ship, and the chart's rendering, is accepted by the real
	// apiserver (server-side dry-run: admission and schema validation, nothing
	// created). Namespaced objects need their namespace, so those are made first.
	t.Run("ManifestsServerDryRun", func(t *testing.T) {
		e.kubectlRun(t, time.Minute, "apply", "-f", e.path("deploy/namespace.yaml"))
		ctx := ctxT(t, time.Minute)
		if _, err := e.run(ctx, e.kubectl, "create", "namespace", "hoptrace-demo"); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.deleteNamespace(t, "hoptrace-demo") })
		for _, f := range []string{"deploy/namespace.yaml", "deploy/rbac.yaml", "deploy/daemonset.yaml", "deploy/examples/jaeger.yaml", "deploy/examples/sampleapp.yaml"} {
			out := e.kubectlRun(t, time.Minute, "apply", "--dry-run=server", "-f", e.path(f))
			t.Logf("%s: %s", f, strings.TrimSpace(out))
		}
		rendered := e.helmRun(t, time.Minute, "template", release, e.path("deploy/helm/hoptrace"), "--namespace", agentNS)
		ctx2 := ctxT(t, time.Minute)
		cmd := exec.CommandContext(ctx2, e.kubectl, "apply", "--dry-run=server", "-f", "-")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
		cmd.Stdin = strings.NewReader(rendered)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm template | kubectl apply --dry-run=server: %v\n%s", err, out)
		}
	})

	t.Run("AgentDaemonSetReady", func(t *testing.T) {
		args := []string{
			"install", release, e.path("deploy/helm/hoptrace"),
			"--namespace", agentNS, "--create-namespace", "--wait", "--timeout", "3m",
			"--set", "image.tag=" + e.imageTag,
			"--set", "sampling.rate=1",
			"--set", "collector.endpoint=http://jaeger." + tracingNS + ".svc.cluster.local:4317",
			// Spans reach Jaeger within a second, which keeps polling short.
			"--set-string", "extraArgs[0]=--otlp-batch-delay=500ms",
			"--set", "host.pinDir=" + e.pinDir,
			"--set", "host.cgroup2Path=" + e.cgroup2Path,
		}
		e.helmRun(t, 4*time.Minute, append(args, e.helmArgs...)...)
		ds := e.waitDaemonSetReady(t, 2*time.Minute)
		if int(ds.Status.DesiredNumberScheduled) != len(nodes) {
			t.Errorf("agent scheduled on %d of %d nodes", ds.Status.DesiredNumberScheduled, len(nodes))
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// Least privilege, as the kernel applies it: the traces checked below
	// flow through this agent.
	t.Run("AgentLeastPrivilege", func(t *testing.T) {
		for _, n := range nodes {
			e.checkLeastPrivilege(t, n.Name)
		}
	})

	// Pods created after the agent. The `hoptrace await-capture` init
	// container holds each app until its pod is captured.
	world, client := worldApp, clientApp("client", "http://hello:8080/", 500*time.Millisecond, 0)
	world.await, client.await = true, true
	e.createDeployment(t, world)
	e.createDeployment(t, client)
	optout := clientApp("optout", "http://hello:8080/", 500*time.Millisecond, 0)
	optout.annotations = map[string]string{"hoptrace.io/inject": "disabled"}
	e.createDeployment(t, optout)
	for _, name := range []string{"world", "client", "optout"} {
		// Clients have no readiness probe: ready means running.
		e.waitDeploymentReady(t, appNS, name, 3*time.Minute)
	}

	t.Run("PodsCaptured", func(t *testing.T) {
		for _, name := range []string{"emoji", "hello", "world", "client"} {
			pod := e.onePod(t, name)
			eventually(t, time.Minute, "pod "+pod.Name+" attached", func() error {
				if ok, why := attached(e.agentPods(t, pod.Spec.NodeName), pod); !ok {
					return fmt.Errorf("%s", why)
				}
				return nil
			})
		}
	})

	j := e.portForwardJaeger(t)

	t.Run("OneTraceFourSpansPerHop", func(t *testing.T) {
		chain := []string{"client", "hello", "world", "emoji"}
		tr := e.waitChainTrace(t, j, "client", chain, nil)
		e.checkChain(t, tr, chain, []string{"hello", "world", "emoji"})
		t.Logf("trace %s:\n%s", tr.TraceID, dumpTrace(tr))
	})

	t.Run("ServiceClusterIPAndDNSName", func(t *testing.T) {
		// By DNS name: server.address is the Service's name, the proxy dialled
		// its ClusterIP (kube-proxy picks the pod after that).
		tr := e.waitChainTrace(t, j, "client", []string{"client", "hello", "world", "emoji"}, nil)
		out := findLeg(tr, "client", "outbound-client")
		if out == nil {
			t.Fatal("no outbound-client span of client")
		}
		if got := tag(*out, "server.address"); got != "hello" {
			t.Errorf("client → hello by name: server.address %q, want hello", got)
		}
		if got := tag(*out, "network.peer.address"); got != svcHello.Spec.ClusterIP {
			t.Errorf("client → hello by name: network.peer.address %q, want the ClusterIP %s", got, svcHello.Spec.ClusterIP)
		}

		// By ClusterIP: the same hops, the IP as server.address.
		ipClient := clientApp("client-ip", "http://"+svcHello.Spec.ClusterIP+":8080/", 200*time.Millisecond, 5)
		ipClient.await = true
		e.createPod(t, ipClient)
		e.waitPodPhase(t, "client-ip", 2*time.Minute, corev1.PodSucceeded, corev1.PodFailed)
		tr = e.waitChainTrace(t, j, "client-ip", []string{"client-ip", "hello", "world", "emoji"}, nil)
		e.checkChain(t, tr, []string{"client-ip", "hello", "world", "emoji"}, []string{svcHello.Spec.ClusterIP, "world", "emoji"})
	})

	// The hops above go through Services: kube-proxy rewrites the ClusterIP
	// to the backend's address between the two proxies, and where both pods
	// are on one node the agent still passes the bytes in memory (its
	// connection identity program on its own cgroup pairs the two sides).
	t.Run("ServiceHopsHandedOff", func(t *testing.T) {
		client, hello := e.onePod(t, "client"), e.onePod(t, "hello")
		if client.Spec.NodeName != hello.Spec.NodeName {
			t.Skipf("client on %s, hello on %s: no same-node Service hop to check", client.Spec.NodeName, hello.Spec.NodeName)
		}
		out, err := e.hoptrace(t, client.Spec.NodeName, "metrics", "hoptrace_local_handoffs_total")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("hoptrace metrics hoptrace_local_handoffs_total:\n%s", out)
		matched := -1.0
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(line, `hoptrace_local_handoffs_total{result="matched"} `); ok {
				fmt.Sscan(v, &matched)
			}
		}
		if matched < 1 {
			t.Errorf("hand-offs matched %v on node %s, want the same-node hops through Services handed off", matched, client.Spec.NodeName)
		}
	})

	t.Run("OptOutAnnotation", func(t *testing.T) {
		pod := e.onePod(t, "optout")
		if ok, why := attached(e.agentPods(t, pod.Spec.NodeName), pod); ok || !strings.HasPrefix(why, "not listed") {
			t.Errorf("opted-out pod %s: %s, want not listed", pod.Name, why)
		}
		// Its requests still reach hello, whose (captured) inbound traces them
		// with the opted-out pod as the client, but no span is its own.
		eventually(t, time.Minute, "hello's spans of requests from the opted-out pod", func() error {
			trs, err := j.traces("hello", 50, map[string]string{"client.address": pod.Status.PodIP})
			if err != nil {
				return err
			}
			if len(trs) == 0 {
				return fmt.Errorf("none yet")
			}
			return nil
		})
		svcs, err := j.services()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(svcs, "optout") {
			t.Errorf("Jaeger has spans of service optout (services %v)", svcs)
		}
	})

	t.Run("KubeletProbesUntraced", func(t *testing.T) {
		// hello's readiness probe hits /healthz every second.
		trs, err := j.traces("hello", 1000, nil)
		if err != nil {
			t.Fatal(err)
		}
		probes := 0
		for _, tr := range trs {
			for _, s := range tr.Spans {
				if tag(s, "url.path") == "/healthz" || strings.HasPrefix(tag(s, "user_agent.original"), "kube-probe/") {
					probes++
				}
			}
		}
		if probes > 0 {
			t.Errorf("%d spans of kubelet probes in %d traces of hello", probes, len(trs))
		}
		if len(trs) == 0 {
			t.Error("no traces of hello at all")
		}
	})

	t.Run("FlowsCLI", func(t *testing.T) {
		pod := e.onePod(t, "client")
		node := pod.Spec.NodeName
		eventually(t, 30*time.Second, "an outbound flow of "+pod.Name+" to hello", func() error {
			for _, f := range e.agentFlows(t, node) {
				if f.Pod == appNS+"/"+pod.Name && f.Direction == "outbound" && f.Redirected &&
					f.Dst == svcHello.Spec.ClusterIP+":8080" && f.Protocol == "http1" {
					return nil
				}
			}
			return fmt.Errorf("not listed")
		})
		// The table a user sees, through `kubectl exec ds/hoptrace`.
		out := e.kubectlRun(t, 30*time.Second, "exec", "-n", agentNS, "ds/"+release, "--", "hoptrace", "flows")
		if !strings.Contains(out, "ORIGINAL-DST") || !strings.Contains(out, appNS+"/") {
			t.Errorf("hoptrace flows printed:\n%s", out)
		}
	})

	t.Run("RollingRestartFailsNoRequest", func(t *testing.T) {
		// 20 requests a second through all three hops for ~40s, across a
		// rolling restart of the agent.
		const count = 800
		load := clientApp("load", "http://hello:8080/", 50*time.Millisecond, count)
		load.await = true
		e.createPod(t, load)
		e.waitPodPhase(t, "load", 2*time.Minute, corev1.PodRunning, corev1.PodSucceeded)
		time.Sleep(3 * time.Second) // steady traffic first
		restart := time.Now()
		e.kubectlRun(t, 30*time.Second, "rollout", "restart", "-n", agentNS, "ds/"+release)
		e.kubectlRun(t, 3*time.Minute, "rollout", "status", "-n", agentNS, "ds/"+release, "--timeout=3m")
		e.waitDaemonSetReady(t, time.Minute)
		t.Logf("rolling restart took %v", time.Since(restart).Round(100*time.Millisecond))
		if p := e.waitPodPhase(t, "load", time.Second, corev1.PodRunning, corev1.PodSucceeded); p.Status.Phase != corev1.PodRunning {
			t.Error("the load finished before the restart did: make it longer")
		}
		pod := e.waitPodPhase(t, "load", 3*time.Minute, corev1.PodSucceeded, corev1.PodFailed)
		ok, failed := countRequests(e.logs(t, appNS, pod.Name, "load"))
		t.Logf("load: %d requests succeeded, %d failed", ok, len(failed))
		if len(failed) > 0 || ok != count {
			t.Errorf("%d of %d requests failed during the rolling restart (%d ok): %s", len(failed), count, ok, strings.Join(first(failed, 10), "\n"))
		}
		// The restarted agent captures new connections again.
		for _, name := range []string{"hello", "world", "client"} {
			p := e.onePod(t, name)
			eventually(t, time.Minute, "pod "+p.Name+" attached after the restart", func() error {
				if ok, why := attached(e.agentPods(t, p.Spec.NodeName), p); !ok {
					return fmt.Errorf("%s", why)
				}
				return nil
			})
		}
	})

	t.Run("NodeProbeSeesTheAgent", func(t *testing.T) {
		// The control for the uninstall check: with the agent running, the probe
		// must find its pins and its programs on the pods.
		for _, n := range nodes {
			r := e.nodeProbe(t, n.Name, "nodeprobe-running-")
			t.Logf("node %s with the agent: %d pins, %d attachments, scanned %d cgroups and %d netns", n.Name, len(r.Pins), len(r.Attached), r.Scanned.Cgroups, r.Scanned.Netns)
			kinds := map[string]int{}
			for _, a := range r.Attached {
				kinds[a.Attach]++
			}
			if len(r.Pins) == 0 || kinds["connect4"] == 0 || kinds["sockops"] == 0 || kinds["sk_lookup"] == 0 {
				t.Errorf("node %s: the probe does not see the running agent: pins %d, attachments by type %v, errors %v", n.Name, len(r.Pins), kinds, r.Errors)
			}
		}
	})

	t.Run("UninstallLeavesNothing", func(t *testing.T) {
		e.helmRun(t, 4*time.Minute, "uninstall", release, "-n", agentNS, "--wait", "--timeout", "3m")
		eventually(t, 2*time.Minute, "agent pods gone", func() error {
			pods := e.kubectlRun(t, 30*time.Second, "get", "pods", "-n", agentNS, "-o", "name")
			if strings.TrimSpace(pods) != "" {
				return fmt.Errorf("still running: %s", strings.TrimSpace(pods))
			}
			return nil
		})
		for _, n := range nodes {
			r := e.nodeProbe(t, n.Name, "nodeprobe-uninstalled-")
			t.Logf("node %s after uninstall: %d pins, %d attachments, scanned %d cgroups and %d netns", n.Name, len(r.Pins), len(r.Attached), r.Scanned.Cgroups, r.Scanned.Netns)
			if len(r.Pins) > 0 || len(r.Attached) > 0 || len(r.Errors) > 0 {
				t.Errorf("node %s after uninstall: pins %v, attached %+v, errors %v", n.Name, r.Pins, r.Attached, r.Errors)
			}
			if r.Scanned.Cgroups == 0 || r.Scanned.Netns == 0 {
				t.Errorf("node %s: the probe saw %d pod cgroups and %d pod netns; it cannot vouch for the node", n.Name, r.Scanned.Cgroups, r.Scanned.Netns)
			}
		}
		// Traffic still flows: the pods keep working without the agent.
		before := len(strings.Split(e.logs(t, appNS, e.onePod(t, "client").Name, "client"), "\n"))
		time.Sleep(3 * time.Second)
		ok, failed := countRequests(lastLines(e.logs(t, appNS, e.onePod(t, "client").Name, "client"), before))
		if ok == 0 || len(failed) > 0 {
			t.Errorf("after uninstall: %d requests ok, %d failed: %v", ok, len(failed), first(failed, 5))
		}
	})
}

// waitChainTrace polls Jaeger for a trace of service that has all four legs of
// every hop of chain, and returns the newest one.
func (e *env) waitChainTrace(t *testing.T, j *jaeger, service string, chain []string, tags map[string]string) jaegertest.Trace {
	t.Helper()
	want := 4 * (len(chain) - 1)
	var found jaegertest.Trace
	eventually(t, 90*time.Second, fmt.Sprintf("a trace of %s with %d spans", service, want), func() error {
		trs, err := j.traces(service, 20, tags)
		if err != nil {
			return err
		}
		sizes := []int{}
		for _, tr := range trs {
			// A trace still being exported has fewer spans; wait for a whole one.
			if len(tr.Spans) == want {
				found = tr
				return nil
			}
			sizes = append(sizes, len(tr.Spans))
		}
		return fmt.Errorf("%d traces, span counts %v", len(trs), sizes)
	})
	return found
}

// checkChain checks the trace of one request along chain: the four legs of
// each hop with the right services, parents, server.address and Kubernetes
// resource attributes of the real pods.
func (e *env) checkChain(t *testing.T, tr jaegertest.Trace, chain, serverAddrs []string) {
	t.Helper()
	if want := 4 * (len(chain) - 1); len(tr.Spans) != want {
		t.Fatalf("trace %s has %d spans, want %d (4 per hop)", tr.TraceID, len(tr.Spans), want)
	}
	var prevInboundClient *jaegertest.Span
	for i := 0; i+1 < len(chain); i++ {
		from, to := chain[i], chain[i+1]
		legs := map[string]*jaegertest.Span{
			"outbound-server": findLeg(tr, from, "outbound-server"),
			"outbound-client": findLeg(tr, from, "outbound-client"),
			"inbound-server":  findLeg(tr, to, "inbound-server"),
			"inbound-client":  findLeg(tr, to, "inbound-client"),
		}
		for leg, s := range legs {
			if s == nil {
				t.Errorf("hop %s → %s: no %s span", from, to, leg)
			}
		}
		if t.Failed() {
			return
		}
		parents := [][2]string{{"outbound-client", "outbound-server"}, {"inbound-server", "outbound-client"}, {"inbound-client", "inbound-server"}}
		for _, p := range parents {
			if got, want := legs[p[0]].ParentID(), legs[p[1]].SpanID; got != want {
				t.Errorf("hop %s → %s: %s's parent %s, want the %s %s", from, to, p[0], got, p[1], want)
			}
		}
		// The app forwarded the context it received: the next hop's first leg
		// is a child of this pod's inbound-client span.
		if prevInboundClient != nil && legs["outbound-server"].ParentID() != prevInboundClient.SpanID {
			t.Errorf("hop %s → %s: outbound-server's parent %s, want %s's inbound-client %s", from, to, legs["outbound-server"].ParentID(), from, prevInboundClient.SpanID)
		}
		if i == 0 && legs["outbound-server"].ParentID() != "" {
			t.Errorf("the first span has parent %s; the client sent no context", legs["outbound-server"].ParentID())
		}
		prevInboundClient = legs["inbound-client"]
		for leg, s := range legs {
			if got := tag(*s, "server.address"); got != serverAddrs[i] {
				t.Errorf("hop %s → %s: %s server.address %q, want %q", from, to, leg, got, serverAddrs[i])
			}
			if got := tag(*s, "hoptrace.leg"); got != leg {
				t.Errorf("hop %s → %s: leg %s has hoptrace.leg %q", from, to, leg, got)
			}
		}
		if to == "emoji" {
			if got := tag(*legs["inbound-server"], "rpc.system"); got != "grpc" {
				t.Errorf("hop %s → emoji: rpc.system %q, want grpc", from, got)
			}
		}
	}
	// Every span's resource names the real pod that produced it.
	for _, s := range tr.Spans {
		svc := spanService(tr, s)
		p := tr.Process(s)
		podName, _ := p.Tag("k8s.pod.name")
		ns, _ := p.Tag("k8s.namespace.name")
		node, _ := p.Tag("k8s.node.name")
		pods := e.appPods(t, svc)
		idx := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.Name == podName })
		if idx < 0 {
			t.Errorf("span %s of %s: k8s.pod.name %q is no pod of %s", s.SpanID, svc, podName, svc)
			continue
		}
		if ns != appNS {
			t.Errorf("span %s of %s: k8s.namespace.name %q, want %s", s.SpanID, svc, ns, appNS)
		}
		if node != pods[idx].Spec.NodeName {
			t.Errorf("span %s of %s: k8s.node.name %q, want %s", s.SpanID, svc, node, pods[idx].Spec.NodeName)
		}
	}
}

func findLeg(tr jaegertest.Trace, service, leg string) *jaegertest.Span {
	for i, s := range tr.Spans {
		if spanService(tr, s) == service && tag(s, "hoptrace.leg") == leg {
			return &tr.Spans[i]
		}
	}
	return nil
}

func dumpTrace(tr jaegertest.Trace) string {
	var b strings.Builder
	spans := slices.Clone(tr.Spans)
	slices.SortFunc(spans, func(a, b jaegertest.Span) int { return int(a.StartTime - b.StartTime) })
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s parent=%s %-8s %-16s server.address=%s peer=%s path=%s\n", s.SpanID, s.ParentID(),
			spanService(tr, s), tag(s, "hoptrace.leg"), tag(s, "server.address"), tag(s, "network.peer.address"), tag(s, "url.path"))
	}
	return b.String()
}

// The sample client logs "request N: 200 OK <body>" or "request N: <error>".
var requestLine = regexp.MustCompile(`request \d+: (.*)$`)

func countRequests(log string) (ok int, failed []string) {
	for _, line := range strings.Split(log, "\n") {
		m := requestLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if strings.HasPrefix(m[1], "200 OK") {
			ok++
		} else {
			failed = append(failed, line)
		}
	}
	return ok, failed
}

func lastLines(log string, skip int) string {
	lines := strings.Split(log, "\n")
	if skip > len(lines) {
		return ""
	}
	return strings.Join(lines[skip:], "\n")
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// probeReport is nodeprobe's output (test/e2e/nodeprobe).
type probeReport struct {
	Pins     []string `json:"pins"`
	Attached []struct {
		Target, Attach, Program string
	} `json:"attached"`
	Scanned struct {
		Cgroups int `json:"cgroups"`
		Netns   int `json:"netns"`
	} `json:"scanned"`
	Errors []string `json:"errors"`
}

// nodeProbe runs nodeprobe bpf on a node and returns its report.
func (e *env) nodeProbe(t *testing.T, node, prefix string) probeReport {
	t.Helper()
	out := e.runNodeProbe(t, node, prefix, "bpf", "-pin-dir", e.pinDir, "-cgroup-root", "/host/cgroup2")
	var r probeReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("nodeprobe on %s: %v: %s", node, err, out)
	}
	return r
}

// runNodeProbe runs nodeprobe with args on a node as a privileged hostPID pod
// and returns its output.
func (e *env) runNodeProbe(t *testing.T, node, prefix string, args ...string) string {
	t.Helper()
	name := prefix + strings.ReplaceAll(strings.ToLower(node), ".", "-")
	if len(name) > 63 {
		name = name[:63]
	}
	hostPathDir := corev1.HostPathDirectory
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS},
		Spec: corev1.PodSpec{
			NodeName:      node,
			HostPID:       true,
			RestartPolicy: corev1.RestartPolicyNever,
			Tolerations:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:            "probe",
				Image:           e.image("e2e-nodeprobe"),
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            args,
				SecurityContext: &corev1.SecurityContext{Privileged: ptr(true)},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "bpffs", MountPath: "/sys/fs/bpf", ReadOnly: true},
					{Name: "cgroup2", MountPath: "/host/cgroup2", ReadOnly: true},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "bpffs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/sys/fs/bpf", Type: &hostPathDir}}},
				{Name: "cgroup2", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: e.cgroup2Path, Type: &hostPathDir}}},
			},
		},
	}
	if _, err := e.client.CoreV1().Pods(appNS).Create(ctxT(t, 30*time.Second), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	p := e.waitPodPhase(t, name, 2*time.Minute, corev1.PodSucceeded, corev1.PodFailed)
	out := e.logs(t, appNS, name, "probe")
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("nodeprobe on %s failed: %s", node, out)
	}
	return out
}
