package pods

import (
	"context"
	"errors"
	"net"
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
