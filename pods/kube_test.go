package pods

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestNewKubeSourceConfig(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	t.Setenv("NODE_NAME", "")
	if _, err := NewKubeSource(KubeConfig{REST: cfg, CgroupRoot: t.TempDir()}); !errors.Is(err, ErrNoNodeName) {
		t.Errorf("no node name: %v, want ErrNoNodeName", err)
	}
	t.Setenv("NODE_NAME", "node-from-env")
	s, err := NewKubeSource(KubeConfig{REST: cfg, CgroupRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if s.node != "node-from-env" || s.resync != 30*time.Second || s.coalesce != 100*time.Millisecond || s.resolver.procRoot != "/proc" {
		t.Errorf("defaults: node %q resync %v coalesce %v proc %q", s.node, s.resync, s.coalesce, s.resolver.procRoot)
	}
	if _, err := NewKubeSource(KubeConfig{NodeName: "n", Kubeconfig: "/nonexistent/kubeconfig"}); err == nil {
		t.Error("a missing kubeconfig file is not an error")
	}
}

// TestRunWithoutAPIServer: while the API server cannot be reached nothing is
// sent (an empty snapshot would detach every pod), and Run ends with its context.
func TestRunWithoutAPIServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // a port nothing listens on
	s, err := NewKubeSource(KubeConfig{REST: &rest.Config{Host: "http://" + addr}, NodeName: "n", CgroupRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	out := make(chan Snapshot, 1)
	start := time.Now()
	if err := s.Run(ctx, out); err != nil {
		t.Errorf("Run = %v, want nil when its context ends", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v to return after its context ended", d)
	}
	if len(out) != 0 {
		t.Errorf("sent %+v without a pod list", <-out)
	}
}

// TestKubeSourceRequests: the pod list and watch ask, as the generated
// clientset would, for this node's pods of every namespace, protobuf preferred
// (a pod is a fraction of its JSON size and cheaper to decode).
func TestKubeSourceRequests(t *testing.T) {
	watching := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/api/v1/pods" || q.Get("fieldSelector") != "spec.nodeName=n" {
			t.Errorf("request %s, want /api/v1/pods?fieldSelector=spec.nodeName=n", r.URL)
		}
		if got, want := r.Header.Get("Accept"), "application/vnd.kubernetes.protobuf,application/json"; got != want {
			t.Errorf("%s: Accept %q, want %q", r.URL, got, want)
		}
		if got := r.Header.Get("User-Agent"); got != "hoptrace-agent/n" {
			t.Errorf("%s: User-Agent %q", r.URL, got)
		}
		w.Header().Set("Content-Type", "application/json")
		if q.Get("watch") != "true" {
			w.Write([]byte(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`))
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-watching:
		default:
			close(watching)
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	s, err := NewKubeSource(KubeConfig{REST: &rest.Config{Host: srv.URL}, NodeName: "n", CgroupRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := make(chan Snapshot, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	select {
	case snap := <-out:
		if len(snap.Pods) != 0 || len(snap.Problems) != 0 {
			t.Errorf("snapshot %+v, want an empty one", snap)
		}
	case err := <-done:
		t.Fatalf("Run = %v before the first snapshot", err)
	}
	select {
	case <-watching:
	case <-ctx.Done():
		t.Error("no watch after the list")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}
