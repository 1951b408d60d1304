package netns

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/internal/testenv"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestDoSwitchesAndReturns(t *testing.T) {
	testenv.RequirePrivileged(t)
	// A fresh namespace, owned by this test only.
	f, err := os.CreateTemp(t.TempDir(), "ns")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	path := f.Name()
	if err := Do(mustOpen(t, "/proc/self/ns/net"), func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		return unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, "")
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(path, unix.MNT_DETACH) })

	host := inode(t, "/proc/self/ns/net")
	var inside uint64
	if err := DoPath(path, func() error {
		inside = inode(t, "/proc/thread-self/ns/net")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside == host || inside != inode(t, path) {
		t.Errorf("fn ran in netns %d, want %d (host %d)", inside, inode(t, path), host)
	}
	// Every thread is back home: many calls later, this one still is.
	for range 50 {
		DoPath(path, func() error { return nil })
	}
	if got := inode(t, "/proc/thread-self/ns/net"); got != host {
		t.Errorf("caller's thread in netns %d, want %d", got, host)
	}
	if err := DoPath("/nonexistent", func() error { return nil }); err == nil {
		t.Error("DoPath of a missing file succeeded")
	}
}

func mustOpen(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}
