package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/pods"
)

// Shown: the agent with --infer-context links the calls of a pod annotated
// (pods file inferContext: true) whose app forwards no headers, and counts
// them in /metrics; an identical pod without the annotation is left alone.
func TestAgentInfersContextForOptedInPods(t *testing.T) {
	testenv.RequirePrivileged(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		testenv.Unavailable(t, "python3 not installed")
	}
	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	pod := map[string]*nodebox.Pod{}
	for _, name := range []string{"client", "infer", "plain", "back"} {
		if pod[name], err = node.AddPod(name); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := pod["back"].Listen("tcp4", "0.0.0.0:8081")
	if err != nil {
		t.Fatal(err)
	}
	back := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "back "+r.Header.Get("X-Request-Id"))
	})}
	go back.Serve(ln)
	t.Cleanup(func() { back.Close() })
	for _, name := range []string{"infer", "plain"} {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, py, "../infer/testdata/threaded_front.py", "8080", pod["back"].IPv4.String(), "8081", "0")
		if err := pod[name].Start(cmd); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); cmd.Wait() })
	}

	dir := t.TempDir()
	podsFile := filepath.Join(dir, "pods.yaml")
	var entries strings.Builder
	for _, name := range []string{"infer", "plain"} {
		fmt.Fprintf(&entries, "- {name: %s, netns: %s, cgroup: %s, inferContext: %v}\n", name, pod[name].NetnsPath, pod[name].CgroupDir, name == "infer")
	}
	os.WriteFile(podsFile, []byte(entries.String()), 0o644)
	socket := filepath.Join(dir, "admin.sock")
	a, err := New(Config{
		Sources:      []pods.Source{&pods.FileSource{Path: podsFile}},
		PinDir:       testenv.TempBPFFS(t),
		AdminSocket:  socket,
		SampleRate:   1,
		InferContext: true,
		Exporter:     exporter.Config{Endpoint: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)},
		Logger:       slog.New(slog.DiscardHandler),
		Reconcile:    200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	admin := NewClient(socket)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := admin.Pods(context.Background())
		if err == nil && len(r.Pods) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods not captured: %+v %v", r, err)
		}
	}

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: pod["client"].Dial}}
	const n = 20
	for _, name := range []string{"infer", "plain"} {
		for i := range n {
			id := name + "-" + strconv.Itoa(i)
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s:8080/", pod[name].IPv4), nil)
			req.Header.Set("X-Request-Id", id)
			var resp *http.Response
			for try := 0; ; try++ { // the app may still be starting
				if resp, err = hc.Do(req); err == nil && resp.StatusCode == http.StatusOK || try == 50 {
					break
				}
				if err == nil {
					resp.Body.Close()
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "front " + id + " back " + id; string(body) != want {
				t.Fatalf("%s: %q, want %q", id, body, want)
			}
		}
	}

	resp, err := admin.hc.Get("http://agent/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^hoptrace_infer_requests_total\{result="(\w+)"\} (\d+)$`).FindAllStringSubmatch(string(b), -1) {
		got[m[1]], _ = strconv.Atoi(m[2])
	}
	// The annotated pod's n calls, each linked; the other pod's never asked.
	if got["linked"] != n || got["ambiguous"] != 0 || got["no_data"] != 0 {
		t.Errorf("hoptrace_infer_requests_total = %v, want linked %d only\n%s", got, n, b)
	}
}
