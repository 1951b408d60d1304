package pods

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFile(t *testing.T) {
	data := []byte(`
- name: hello
  namespace: demo
  netns: /run/netns/hello
  cgroup: /sys/fs/cgroup/demo/hello
  labels: {app: hello}
  skipInboundPorts: [9090]
  inferContext: true
- name: broken
  netns: /run/netns/broken
- name: world
  netns: /run/netns/world
  cgroup: /sys/fs/cgroup/demo/world
- name: hello
  namespace: demo
  netns: /run/netns/x
  cgroup: /x
`)
	snap, err := ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pods) != 2 || snap.Pods[0].Name != "hello" || snap.Pods[1].Name != "world" {
		t.Fatalf("pods = %+v", snap.Pods)
	}
	if !snap.Pods[0].InferContext || snap.Pods[1].InferContext {
		t.Errorf("inferContext: hello %v, world %v; want true, false", snap.Pods[0].InferContext, snap.Pods[1].InferContext)
	}
	if got := snap.Pods[0].ServiceName(); got != "hello" {
		t.Errorf("service name %q", got)
	}
	if snap.Pods[1].Namespace != "default" {
		t.Errorf("default namespace: %q", snap.Pods[1].Namespace)
	}
	if len(snap.Problems) != 2 {
		t.Fatalf("problems = %v", snap.Problems)
	}
	for i, want := range []string{"entry 2 (default/broken)", "entry 4 (demo/hello)"} {
		if !errors.Is(snap.Problems[i], ErrBadEntry) || !strings.Contains(snap.Problems[i].Error(), want) {
			t.Errorf("problem %d = %v, want it to name %q", i, snap.Problems[i], want)
		}
	}
	if !strings.Contains(snap.Problems[0].Error(), "cgroup") {
		t.Errorf("problem does not name the missing field: %v", snap.Problems[0])
	}
}

func TestParseFileRejectsNonList(t *testing.T) {
	for _, in := range []string{"name: x", "- name: x\n  bogus: 1", "[1, 2"} {
		if _, err := ParseFile([]byte(in)); err == nil {
			t.Errorf("ParseFile(%q) = nil error", in)
		}
	}
	if snap, err := ParseFile([]byte("  \n")); err != nil || len(snap.Pods) != 0 {
		t.Errorf("empty file: %+v, %v", snap, err)
	}
}

func TestFileSourceFollowsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pods.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("- {name: a, netns: /n/a, cgroup: /c/a}\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Snapshot)
	src := &FileSource{Path: path, Poll: 10 * time.Millisecond}
	go src.Run(ctx, out)

	next := func() Snapshot {
		t.Helper()
		select {
		case s := <-out:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no snapshot")
		}
		return Snapshot{}
	}
	if s := next(); len(s.Pods) != 1 {
		t.Fatalf("first snapshot %+v", s)
	}
	write("- {name: a, netns: /n/a, cgroup: /c/a}\n- {name: b, netns: /n/b, cgroup: /c/b}\n")
	if s := next(); len(s.Pods) != 2 {
		t.Fatalf("after adding b: %+v", s)
	}
	// A broken file keeps the last good pods and says why.
	write("this is: [not a list")
	s := next()
	if len(s.Pods) != 2 || len(s.Problems) != 1 {
		t.Fatalf("broken file: %+v", s)
	}
	write("- {name: b, netns: /n/b, cgroup: /c/b}\n")
	if s := next(); len(s.Pods) != 1 || s.Pods[0].Name != "b" {
		t.Fatalf("after removing a: %+v", s)
	}
}
