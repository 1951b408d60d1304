package agent

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/pods"
)

// Shown: while a released pod's proxies drain a request in flight (up to 2 s),
// the agent keeps answering: /readyz and /pods never wait for the drain, and the
// released pod leaves /pods at once.
func TestAdminAnswersWhileAPodDrains(t *testing.T) {
	testenv.RequirePrivileged(t)
	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	web, err := node.AddPod("web")
	if err != nil {
		t.Fatal(err)
	}
	client, err := node.AddPod("client") // not captured: only its request to web is
	if err != nil {
		t.Fatal(err)
	}

	// web's app holds its answer until the request is cut or the test ends.
	ln, err := web.Listen("tcp4", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })

	dir := t.TempDir()
	podsFile := filepath.Join(dir, "pods.yaml")
	entry := fmt.Sprintf("- {name: web, netns: %s, cgroup: %s}\n", web.NetnsPath, web.CgroupDir)
	if err := os.WriteFile(podsFile, []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "admin.sock")
	runAgent(t, Config{
		Sources:     []pods.Source{&pods.FileSource{Path: podsFile, Poll: 20 * time.Millisecond}},
		PinDir:      testenv.TempBPFFS(t),
		AdminSocket: socket,
		Reconcile:   time.Hour, // only the pods file changes drive reconcile
		Exporter:    exporter.Config{Endpoint: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)},
		Logger:      slog.New(slog.DiscardHandler),
	})
	admin := NewClient(socket)
	webAttached := func() bool {
		r, err := admin.Pods(context.Background())
		if err != nil {
			return false
		}
		for _, p := range r.Pods {
			if p.Name == "web" && p.State == "attached" {
				return true
			}
		}
		return false
	}
	waitUntil(t, 20*time.Second, "web attached", webAttached)

	// A request to web through its inbound proxy, held open by the app.
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	conn, err := client.Dial(dctx, "tcp4", web.IPv4.String()+":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached web's app")
	}
	if fl, _ := admin.Flows(context.Background(), ""); len(fl) == 0 {
		t.Fatalf("the request did not go through the proxy: no open flow")
	}

	// web leaves the pods file: the agent releases it, and its inbound proxy
	// waits up to 2 s for the request in flight.
	if err := os.WriteFile(podsFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	go func() {
		// The drain ends when the proxy cuts the request: the client sees EOF.
		bufio.NewReader(conn).ReadString('\n')
		close(gone)
	}()
	hc := admin.hc
	var slowest time.Duration
	released := false
	deadline := time.Now().Add(1500 * time.Millisecond) // inside the 2 s drain
	for time.Now().Before(deadline) {
		t0 := time.Now()
		resp, err := hc.Get("http://agent/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz: %s while a pod drains", resp.Status)
		}
		if !released {
			released = !webAttached()
		}
		slowest = max(slowest, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	if slowest > 300*time.Millisecond {
		t.Fatalf("/readyz and /pods took up to %v while a pod drained: the agent held its lock through the drain", slowest)
	}
	select {
	case <-gone:
		t.Fatal("the request in flight ended before the drain was checked: nothing was draining")
	default:
	}
	if !released {
		t.Error("web still attached in /pods while it drains")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Error("the drain did not cut the request in flight after 2 s")
	}
}
