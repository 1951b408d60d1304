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

	next := func() Snapshot { t.Helper(); return nextSnapshot(t, out) }
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

// TestFileSourceWaitsForWritesToSettle: a writer that truncates the file and
// writes it a moment later must not make the agent see an empty (or partial)
// pods file in between — that would detach every pod for a poll. A file that
// stays empty is taken: that is how every pod is removed.
func TestFileSourceWaitsForWritesToSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pods.yaml")
	two := "- {name: a, netns: /n/a, cgroup: /c/a}\n- {name: b, netns: /n/b, cgroup: /c/b}\n"
	if err := os.WriteFile(path, []byte(two), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Snapshot, 64)
	src := &FileSource{Path: path, Poll: time.Millisecond, Settle: 30 * time.Millisecond}
	go src.Run(ctx, out)
	if s := <-out; len(s.Pods) != 2 {
		t.Fatalf("first snapshot %+v", s)
	}
	// Each rewrite leaves the file empty, then half-written, for 5 ms each:
	// with a 1-ms poll the source reads both states in every round.
	for i := range 10 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		f.WriteString(two[:len(two)-20])
		time.Sleep(5 * time.Millisecond)
		f.WriteString(two[len(two)-20:])
		f.Close()
		if i%2 == 0 {
			time.Sleep(40 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for len(out) > 0 {
		if s := <-out; len(s.Pods) != 2 || len(s.Problems) != 0 {
			t.Fatalf("a rewrite in progress was taken: %+v", s)
		}
	}

	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-out:
		if len(s.Pods) != 0 || len(s.Problems) != 0 {
			t.Fatalf("emptied file: %+v, want no pods and no problems", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an emptied file was never taken")
	}

	// A file that cannot be read keeps the last good pods and says why.
	if err := os.WriteFile(path, []byte(two), 0o644); err != nil {
		t.Fatal(err)
	}
	if s := <-out; len(s.Pods) != 2 {
		t.Fatalf("rewritten file: %+v", s)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if s := <-out; len(s.Pods) != 2 || len(s.Problems) != 1 || !errors.Is(s.Problems[0], os.ErrNotExist) {
		t.Fatalf("removed file: %+v, want the last pods and a not-exist problem", s)
	}
}

func TestReadBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pods.yaml")
	if err := os.WriteFile(path, []byte(strings.Repeat("#", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := readBounded(path, 100); err != nil || len(data) != 100 {
		t.Errorf("at the bound: %d bytes, %v", len(data), err)
	}
	if _, err := readBounded(path, 99); !errors.Is(err, ErrFileTooLarge) {
		t.Errorf("over the bound: %v, want ErrFileTooLarge", err)
	}
	if _, err := readBounded(filepath.Dir(path), 100); !errors.Is(err, ErrNotRegular) {
		t.Errorf("a directory: %v, want ErrNotRegular", err)
	}
}

// nextSnapshot is the next snapshot a source sends on out; the test fails
// when none comes within 5 s.
func nextSnapshot(t *testing.T, out <-chan Snapshot) Snapshot {
	t.Helper()
	select {
	case s := <-out:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot")
	}
	return Snapshot{}
}
