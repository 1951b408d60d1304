package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DialTCP connects to dst from inside the namespace nsFd. Only the socket is
// made on a thread switched into the namespace; the connect and its wait run
// on an ordinary goroutine, because waiting for a handshake on a thread locked
// into a namespace makes every wake-up a costly hand-off to that one thread.
//
// src, when valid, is bound first (port chosen by the kernel). control, when
// not nil, sees the socket before it connects (to set SO_MARK, say). Like Go's
// own dials, the connection has TCP_NODELAY set. A context deadline or
// cancellation ends the wait with the context's error.
func DialTCP(ctx context.Context, nsFd int, src netip.Addr, dst netip.AddrPort, control func(fd int) error) (net.Conn, error) {
	return dialTCP(ctx, func(fn func() error) error { return Do(nsFd, fn) }, src, dst, control)
}

// DialTCPFile is DialTCP in the namespace of ns (a file such as
// /proc/PID/ns/net), which it holds open while it makes the socket there. A
// Close of ns by another goroutine meanwhile cannot close the descriptor
// under it, whose number could by then name another file (another pod's
// namespace): the dial gets a descriptor that is still ns, or fails with an
// error that wraps os.ErrClosed.
func DialTCPFile(ctx context.Context, ns *os.File, src netip.Addr, dst netip.AddrPort, control func(fd int) error) (net.Conn, error) {
	rc, err := ns.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns.Name(), err)
	}
	enter := func(fn func() error) error {
		var ferr error
		if err := rc.Control(func(fd uintptr) { ferr = Do(int(fd), fn) }); err != nil {
			// Control fails only for a file closed or closing (poll's
			// ErrFileClosing, which os.ErrClosed does not match).
			return fmt.Errorf("netns %s: %w", ns.Name(), os.ErrClosed)
		}
		return ferr
	}
	return dialTCP(ctx, enter, src, dst, control)
}

// dialTCP makes the socket through enter, which runs its function inside the
// namespace, and connects it outside.
func dialTCP(ctx context.Context, enter func(func() error) error, src netip.Addr, dst netip.AddrPort, control func(fd int) error) (net.Conn, error) {
	family := unix.AF_INET
	if dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	var fd int
	err := enter(func() (err error) {
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return os.NewSyscallError("socket", err)
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "netns-dial") // owns fd from here on
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return nil, os.NewSyscallError("setsockopt", err)
	}
	if control != nil {
		if err := control(fd); err != nil {
			return nil, err
		}
	}
	if src.IsValid() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
			return nil, os.NewSyscallError("bind", err)
		}
	}
	if err := unix.Connect(fd, sockaddr(dst)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return nil, os.NewSyscallError("connect", err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		f.SetWriteDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var connErr error
	werr := rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			connErr = os.NewSyscallError("getsockopt", err)
		case v != 0:
			connErr = os.NewSyscallError("connect", syscall.Errno(v))
		default:
			if _, err := unix.Getpeername(int(fd)); errors.Is(err, unix.ENOTCONN) {
				return false // handshake still in progress: wait for writability
			}
		}
		return true
	})
	if werr != nil {
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			// Only ctx sets our deadline; the poller can fire a hair before ctx's
			// own timer, so wait for it to report why.
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, werr
	}
	if connErr != nil {
		return nil, connErr
	}
	return net.FileConn(f)
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}
