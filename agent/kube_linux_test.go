package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/internal/kubetest"
	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
	"github.com/hoptrace/hoptrace/pods"
)

// Shown: with the Kubernetes source against a real kube-apiserver + etcd, Pod
// objects of this node whose UIDs match simulated pods' cgroup dirs get attached
// (the agent starts after they exist and reconciles them) and their traffic is
// captured; the opt-out annotation releases a pod; deleting a Pod detaches it.
func TestAgentWithKubernetesSource(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := kubetest.Start(t)
	admin := kubetest.Client(t, c.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	const nodeName = "node-a"
	boxes := map[string]*nodebox.Pod{}
	uids := map[string]types.UID{}
	for _, name := range []string{"web", "api", "optout"} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "sampleapp"}}},
		}
		if name == "optout" {
			p.Annotations = map[string]string{pods.AnnotationInject: "disabled"}
		}
		created, err := admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uids[name] = created.UID
		box, err := node.AddPod(name, nodebox.WithCgroup(filepath.Join("kubepods", "besteffort", "pod"+string(created.UID))))
		if err != nil {
			t.Fatal(err)
		}
		sleeper := exec.Command("sleep", "600")
		if err := box.Start(sleeper); err != nil {
			t.Fatal(err)
		}
		go sleeper.Wait()
		boxes[name] = box
	}
	// The api pod serves HTTP, as its app would.
	ln, err := boxes["api"].Listen("tcp4", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "api ok") }))

	src, err := pods.NewKubeSource(pods.KubeConfig{REST: c.Config, NodeName: nodeName, Resync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "admin.sock")
	runAgent(t, Config{
		NodeName: nodeName, Sources: []pods.Source{src}, PinDir: testenv.TempBPFFS(t),
		AdminSocket: socket, SampleRate: 1, Reconcile: 500 * time.Millisecond,
		Exporter: exporter.Config{Endpoint: "http://127.0.0.1:1", Logger: slog.New(slog.DiscardHandler)},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})

	client := NewClient(socket)
	attached := func() map[string]bool {
		r, err := client.Pods(ctx)
		if err != nil {
			return nil
		}
		m := map[string]bool{}
		for _, p := range r.Pods {
			if p.State == "attached" {
				m[p.Name] = true
			}
		}
		return m
	}
	waitUntil(t, 20*time.Second, "web and api attached, optout not", func() bool {
		m := attached()
		return m["web"] && m["api"] && !m["optout"]
	})

	// web calls api: both legs are captured.
	curl := exec.CommandContext(ctx, "curl", "-s", "--max-time", "5", fmt.Sprintf("http://%s:8080/", boxes["api"].IPv4))
	var out strings.Builder
	curl.Stdout = &out
	if err := boxes["web"].Run(curl); err != nil || out.String() != "api ok\n" {
		t.Fatalf("web → api: %q %v", out.String(), err)
	}
	// The inbound proxy reports its flow when its side of the connection
	// closes, which can be a moment after curl has its answer.
	var flows []Flow
	waitUntil(t, 10*time.Second, "flows showing web → api captured on both sides", func() bool {
		flows, err = client.Flows(ctx, "")
		if err != nil {
			return false
		}
		seen := map[string]bool{}
		for _, f := range flows {
			if f.Redirected && f.Dst == fmt.Sprintf("%s:8080", boxes["api"].IPv4) {
				seen[f.Pod+" "+f.Direction] = true
			}
		}
		return seen["default/web outbound"] && seen["default/api inbound"]
	})

	// Opting api out releases it.
	api, err := admin.CoreV1().Pods("default").Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	api.Annotations = map[string]string{pods.AnnotationInject: "disabled"}
	if _, err := admin.CoreV1().Pods("default").Update(ctx, api, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "api released after opting out", func() bool { return !attached()["api"] && attached()["web"] })

	// Deleting web detaches it.
	if err := admin.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "web released after delete", func() bool { return len(attached()) == 0 })
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
