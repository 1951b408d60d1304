package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// home is the namespace this process started in, opened once: callers switch
// for every upstream dial, and an open per switch would show.
var home = sync.OnceValues(func() (int, error) {
	fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open own netns: %w", err)
	}
	return fd, nil
})

// Do runs fn on an OS thread switched into the network namespace nsFd and
// switches it back afterwards.
func Do(nsFd int, fn func() error) error {
	self, err := home()
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
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the runtime retires the thread with this goroutine
			// rather than reuse one stuck in the other namespace.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DoPath is Do for a namespace file such as /run/netns/NAME or /proc/PID/ns/net.
func DoPath(path string, fn func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer f.Close()
	return Do(int(f.Fd()), fn)
}

// SocketCookie returns the cookie of the netns the socket fd belongs to: what
// bpf_get_netns_cookie returns for it inside BPF programs (SO_NETNS_COOKIE,
// Linux 5.14).
func SocketCookie(fd int) (uint64, error) {
	const soNetnsCookie = 71 // SO_NETNS_COOKIE
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie)
	if err != nil {
		return 0, fmt.Errorf("read netns cookie: %w", err)
	}
	return v, nil
}
