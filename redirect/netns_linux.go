package redirect

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// hostNetns is the netns this process started in; threads return to it after
// visiting a pod. Opened once: every dial from a pod would otherwise pay for it.
var hostNetns = sync.OnceValues(func() (int, error) {
	fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open own netns: %w", err)
	}
	return fd, nil
})

// openNetns opens a network namespace file and checks that it is one.
func openNetns(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("netns %s: %w", path, ErrNetnsGone)
	}
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	// A netns file is an nsfs inode (or proc, when opened via /proc/<pid>/ns/net).
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		f.Close()
		return nil, fmt.Errorf("netns %s: %w (filesystem magic %#x)", path, ErrNotNetns, st.Type)
	}
	nstype, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || nstype != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("netns %s: %w", path, ErrNotNetns)
	}
	return f, nil
}

// inNetns runs fn on an OS thread switched into the netns nsFd. Sockets fn creates
// belong to that netns for life, whichever thread later uses them.
func inNetns(nsFd int, fn func() error) error {
	host, err := hostNetns()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(nsFd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(host, unix.CLONE_NEWNET); err != nil {
			// The thread is stuck in the pod's netns: keep it locked so the Go
			// runtime retires it when this goroutine exits instead of reusing it.
			errc <- errors.Join(ferr, fmt.Errorf("return to host netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netnsCookie returns the cookie of the netns a socket belongs to; it is what
// bpf_get_netns_cookie returns inside the BPF programs.
func netnsCookie(fd int) (uint64, error) {
	const soNetnsCookie = 71 // SO_NETNS_COOKIE, Linux 5.14
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie)
	if err != nil {
		return 0, fmt.Errorf("read netns cookie: %w", err)
	}
	return v, nil
}
