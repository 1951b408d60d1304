package demo

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/jaegertest"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/spans"
)

// curlHello runs one request to hello from pod p with the given headers.
func curlHello(ctx context.Context, env *Env, p *nodebox.Pod, header ...string) error {
	args := []string{"-s", "-f", "--max-time", "10"}
	for _, h := range header {
		args = append(args, "-H", h)
	}
	cmd := exec.CommandContext(ctx, "curl", append(args, env.HelloURL())...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := p.Run(cmd); err != nil {
		return fmt.Errorf("curl from %s: %w: %s", p.Name, err, out.String())
	}
	return nil
}

// Shown with the agent binary and Jaeger: requests from outside the mesh (a
// netns on the node's bridge that the agent does not capture) carrying a
// sampled traceparent, hoptrace-sample or B3 debug start no trace at
// --sample-rate 0, and are counted; the same from a captured pod does start
// one. --mesh-networks with the outsider's address, and
// --trust-external-sampling, make the outsider's headers count again. Forced
// traces beyond --forced-trace-rate are refused and counted.
func TestUntrustedSamplingE2E(t *testing.T) {
	j := jaegertest.Start(t)
	env := up(t, "http://"+j.OTLPGRPCAddr, "--sample-rate", "0", "--forced-trace-rate", "0.2")
	outsider, err := env.Node.AddPod("outsider") // not in the pods file: never captured
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	baseArgs := env.cfg.AgentArgs

	parent := "00f067aa0ba902b7"
	for i, mode := range []struct {
		name    string
		args    []string
		trusted bool
	}{
		{name: "mesh only", trusted: false},
		{name: "mesh networks", args: []string{"--mesh-networks", outsider.IPv4.String() + "/32"}, trusted: true},
		{name: "trust external sampling", args: []string{"--trust-external-sampling"}, trusted: true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if i > 0 {
				if err := env.StopAgent(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				env.cfg.AgentArgs = append(append([]string(nil), baseArgs...), mode.args...)
				if err := env.StartAgent(ctx); err != nil {
					t.Fatal(err)
				}
				if err := env.WaitCaptured(ctx, len(podNames)); err != nil {
					t.Fatal(err)
				}
			}
			// One trace id per signal, so Jaeger can be asked about each.
			signals := map[string][]string{}
			for _, sig := range []struct{ name, header string }{
				{"sampled traceparent", "traceparent: 00-%s-" + parent + "-01"},
				{"hoptrace-sample", "traceparent: 00-%s-" + parent + "-00|" + spans.OverrideHeader + ": 1"},
				{"b3 debug", "b3: %s-" + parent + "-d"},
			} {
				id := spans.NewTraceID().String()
				signals[id] = strings.Split(fmt.Sprintf(sig.header, id), "|")
				if err := curlHello(ctx, env, outsider, signals[id]...); err != nil {
					t.Fatalf("%s: %v", sig.name, err)
				}
			}
			// A forced trace from inside the mesh: always traced, end to end.
			inside := spans.NewTraceID().String()
			if err := curlHello(ctx, env, env.Pods["client"], "traceparent: 00-"+inside+"-"+parent+"-00", spans.OverrideHeader+": 1"); err != nil {
				t.Fatal(err)
			}
			waitTrace(t, j, inside, len(wantChain))

			// The outsider's requests went first, and through the same exporter:
			// if they had been traced, Jaeger would have them by now.
			for id, hdr := range signals {
				if mode.trusted {
					tr := waitTrace(t, j, id, len(wantChain)-2) // all but the client's two legs
					if p := rootParent(tr); p != parent {
						t.Errorf("%v: hello's inbound-server has parent %q, want the outsider's %s", hdr, p, parent)
					}
					continue
				}
				if tr, err := j.Trace(id); !errors.Is(err, jaegertest.ErrTraceNotFound) {
					t.Errorf("%v from outside the mesh started a trace of %d spans (%v)", hdr, len(tr.Spans), err)
				}
			}
			ignored := metricValue(adminMetrics(t, env.AdminSocket), `hoptrace_sampling_untrusted_ignored_total{namespace="demo",pod="hello"}`)
			want := float64(len(signals))
			if mode.trusted {
				want = -1 // never counted, so absent
			}
			if ignored != want {
				t.Errorf("hoptrace_sampling_untrusted_ignored_total for hello = %v, want %v", ignored, want)
			}

			// Forced traces are rationed per pod: at 0.2/s with a burst of 1
			// the client's forced request above took the token; of five more
			// at once at least three are refused (and counted), and every
			// request still gets its answer.
			for range 5 {
				if err := curlHello(ctx, env, env.Pods["client"], spans.OverrideHeader+": 1"); err != nil {
					t.Fatal(err)
				}
			}
			metrics := adminMetrics(t, env.AdminSocket)
			if n := metricValue(metrics, `hoptrace_forced_traces_refused_total{namespace="demo",pod="client"}`); n < 3 || n > 5 {
				t.Errorf("hoptrace_forced_traces_refused_total for client = %v, want 3 to 5", n)
			}
		})
	}
}

// waitTrace waits until Jaeger holds trace id with n spans.
func waitTrace(t *testing.T, j *jaegertest.Jaeger, id string, n int) jaegertest.Trace {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tr, err := j.Trace(id)
		if err == nil && len(tr.Spans) >= n {
			if len(tr.Spans) != n {
				t.Errorf("trace %s has %d spans, want %d", id, len(tr.Spans), n)
			}
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: %d spans in Jaeger after 30s (%v), want %d", id, len(tr.Spans), err, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rootParent is the parent span id of the trace's first span: the one whose
// parent is not in the trace.
func rootParent(tr jaegertest.Trace) string {
	for _, s := range tr.Spans {
		if _, ok := tr.Span(s.ParentID()); !ok {
			return s.ParentID()
		}
	}
	return ""
}
