package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/redirect"
	"github.com/hoptrace/hoptrace/spans"
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

// Shown: the proxy behind the real redirect layer between two simulated pods. A
// process in pod A calls pod B's app; both proxies run as the agent runs them;
// the hop yields four spans in the chain of docs/proxy.md, and B's app receives a
// traceparent whose parent is the inbound-client span.
func TestBehindRealRedirect(t *testing.T) {
	testenv.RequirePrivileged(t)
	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	a, err := node.AddPod("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := node.AddPod("b")
	if err != nil {
		t.Fatal(err)
	}
	appLn, err := b.Listen("tcp4", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer appLn.Close()
	got := make(chan string, 1)
	go http.Serve(appLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("Traceparent"):
		default:
		}
		fmt.Fprint(w, "b ok")
	}))

	rd, err := redirect.Open(redirect.Config{PinDir: testenv.TempBPFFS(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	log := &spanLog{}
	sampler := spans.NewSampler(1)
	for _, p := range []*nodebox.Pod{a, b} {
		att, err := rd.Attach(redirect.Pod{ID: p.Name, CgroupDir: p.CgroupDir, NetnsPath: p.NetnsPath})
		if err != nil {
			t.Fatal(err)
		}
		res := &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", p.Name)}}
		out, err := proxy.New(proxy.Config{Direction: proxy.Outbound, Resolver: att.OutboundResolver(), Dialer: att.OutboundDialer(), Recorder: log, Sampler: sampler, Resource: res})
		if err != nil {
			t.Fatal(err)
		}
		in, err := proxy.New(proxy.Config{Direction: proxy.Inbound, Resolver: att.InboundResolver(), Dialer: att.InboundDialer(), Recorder: log, Sampler: sampler, Resource: res})
		if err != nil {
			t.Fatal(err)
		}
		go out.Serve(att.Outbound)
		go in.Serve(att.Inbound)
		t.Cleanup(func() { out.Close(); in.Close() })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	curl := exec.CommandContext(ctx, "curl", "-s", "--max-time", "5", fmt.Sprintf("http://%s:8080/", b.IPv4))
	var body strings.Builder
	curl.Stdout = &body
	if err := a.Run(curl); err != nil || body.String() != "b ok" {
		t.Fatalf("a → b: %q %v", body.String(), err)
	}
	tp := <-got

	deadline := time.Now().Add(5 * time.Second)
	for {
		log.mu.Lock()
		n := len(log.spans)
		log.mu.Unlock()
		if n >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.spans) != 4 {
		t.Fatalf("%d spans, want 4", len(log.spans))
	}
	byLeg := map[string]*spans.Span{}
	for _, s := range log.spans {
		for _, at := range s.Attrs {
			if at.Key == "hoptrace.leg" {
				byLeg[at.Str] = s
			}
		}
	}
	outSrv, outCli, inSrv, inCli := byLeg["outbound-server"], byLeg["outbound-client"], byLeg["inbound-server"], byLeg["inbound-client"]
	if outSrv == nil || outCli == nil || inSrv == nil || inCli == nil {
		t.Fatalf("legs: %v", byLeg)
	}
	if outSrv.ParentID.IsValid() || outCli.ParentID != outSrv.SpanID || inSrv.ParentID != outCli.SpanID || inCli.ParentID != inSrv.SpanID {
		t.Errorf("parent chain broken: outSrv %v←, outCli %v←%v, inSrv %v←%v, inCli %v←%v", outSrv.SpanID, outCli.SpanID, outCli.ParentID, inSrv.SpanID, inSrv.ParentID, inCli.SpanID, inCli.ParentID)
	}
	if outSrv.Resource.ServiceName() != "a" || inSrv.Resource.ServiceName() != "b" {
		t.Errorf("resources: outbound %q, inbound %q", outSrv.Resource.ServiceName(), inSrv.Resource.ServiceName())
	}
	want := fmt.Sprintf("00-%s-%s-", inCli.TraceID, inCli.SpanID)
	if !strings.HasPrefix(tp, want) {
		t.Errorf("app got traceparent %q, want parent inbound-client (%s…)", tp, want)
	}
}
