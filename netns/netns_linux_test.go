package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// newNamespace makes a fresh network namespace, owned by the test only and
// gone with it, and returns the path of its bind mount.
func newNamespace(t *testing.T) string {
	t.Helper()
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
	return path
}

func TestDoSwitchesAndReturns(t *testing.T) {
	testenv.RequirePrivileged(t)
	path := newNamespace(t)

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

// DialTCPFile dials from inside the namespace of its file, and a Close of
// that file by another goroutine (the agent detaching a pod while its proxy
// dials) never lets a dial use the descriptor's number for something else:
// each dial either reaches the namespace's own listener or fails with
// os.ErrClosed.
func TestDialTCPFileHoldsTheNamespace(t *testing.T) {
	testenv.RequirePrivileged(t)
	path := newNamespace(t)
	var ln net.Listener
	if err := DoPath(path, func() (err error) {
		if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dst := netip.MustParseAddrPort(ln.Addr().String())
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()

	ns, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialTCPFile(ctx, ns, netip.Addr{}, dst, nil)
	if err != nil {
		t.Fatalf("dial %s inside the namespace: %v", dst, err)
	}
	c.Close()

	var dialed atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				c, err := DialTCPFile(ctx, ns, netip.Addr{}, dst, nil)
				switch {
				case err == nil:
					dialed.Add(1)
					c.Close()
				case errors.Is(err, os.ErrClosed):
					return
				default:
					errc <- err
					return
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	ns.Close()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("dial while the namespace file closed: %v, want success or os.ErrClosed", err)
	}
	if _, err := DialTCPFile(ctx, ns, netip.Addr{}, dst, nil); !errors.Is(err, os.ErrClosed) {
		t.Errorf("dial with a closed namespace file: %v, want os.ErrClosed", err)
	}
	want := dialed.Load() + 1
	deadline := time.Now().Add(5 * time.Second)
	for accepted.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := accepted.Load(); got != want {
		t.Errorf("the namespace's listener accepted %d connections, %d dials succeeded", got, want)
	}
}
