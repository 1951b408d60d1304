package pods

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// withoutCaps runs fn on an OS thread whose effective set lacks caps (thread
// capabilities are per thread). The thread is never unlocked, so the runtime
// ends it with fn's goroutine and no other goroutine runs with its reduced set.
func withoutCaps(t *testing.T, caps []int, fn func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		for _, c := range caps {
			data[c/32].Effective &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("drop capabilities: %v", err)
	}
}

// Shown: a pod whose process the agent may not look at (here: its ns dir is
// unreadable and the thread lacks CAP_DAC_*; on a node, a process of another
// user and an agent without CAP_SYS_PTRACE) is reported as such, not as a pod
// that is still starting.
func TestResolverNetnsPermissionDenied(t *testing.T) {
	const uid = "0a0a0a0a-0000-4000-8000-000000000002"
	n := newFakeNode(t)
	pod := "kubepods/besteffort/pod" + uid
	n.cgroup(pod)
	n.cgroup(filepath.Join(pod, "app"), 42)
	link := n.process(42)
	if err := os.Chmod(filepath.Dir(link), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Dir(link), 0o755) })

	var err error
	withoutCaps(t, []int{unix.CAP_DAC_OVERRIDE, unix.CAP_DAC_READ_SEARCH}, func() {
		_, _, err = newResolver(n.cgroupRoot, n.procRoot).resolve(uid)
	})
	if errors.Is(err, ErrPodNotRunning) || !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "CAP_SYS_PTRACE") {
		t.Errorf("resolve: %v; want a permission error naming CAP_SYS_PTRACE, not ErrPodNotRunning", err)
	}
}
