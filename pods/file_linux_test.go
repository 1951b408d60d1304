package pods

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A path that is no regular file is a read error: the source keeps the last
// good pods and says why, and neither hangs on a pipe nor reads a device
// without end. (A file over the size bound: TestReadBounded.)
func TestFileSourceRefusesOddFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pods.yaml")
	one := "- {name: a, netns: /n/a, cgroup: /c/a}\n"
	if err := os.WriteFile(path, []byte(one), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Snapshot, 8)
	src := &FileSource{Path: path, Poll: time.Millisecond, Settle: time.Millisecond}
	go src.Run(ctx, out)
	next := func() Snapshot { t.Helper(); return nextSnapshot(t, out) }
	if s := next(); len(s.Pods) != 1 {
		t.Fatalf("first snapshot %+v", s)
	}
	// A named pipe no one writes: opening it for reading would wait forever.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	for s = next(); len(s.Problems) == 1 && errors.Is(s.Problems[0], os.ErrNotExist); s = next() {
		// The poll between Remove and Mkfifo saw no file: fine, wait for the pipe.
	}
	if len(s.Pods) != 1 || len(s.Problems) != 1 || !errors.Is(s.Problems[0], ErrNotRegular) {
		t.Fatalf("pipe: %+v, want the last pods and ErrNotRegular", s)
	}
	// A device that never ends.
	if _, err := readBounded("/dev/zero", MaxFileBytes); !errors.Is(err, ErrNotRegular) {
		t.Errorf("/dev/zero: %v, want ErrNotRegular", err)
	}
}

// readBounded never waits on a pipe, even one swapped in for the file while it
// reads: the type is checked on what was opened, not on the path before.
func TestReadBoundedNeverWaitsOnASwappedPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pods.yaml")
	stop := make(chan struct{})
	swapped := make(chan int, 1)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.Remove(path)
			syscall.Mkfifo(path, 0o600)
			os.Remove(path)
			os.WriteFile(path, []byte("- {name: a, netns: /n/a, cgroup: /c/a}\n"), 0o644)
			n++
		}
	}()
	reads := 0
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); reads++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			readBounded(path, MaxFileBytes)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			close(stop)
			t.Fatalf("read %d waited on the pipe", reads)
		}
	}
	close(stop)
	t.Logf("%d reads while the path was swapped %d times", reads, <-swapped)
}
