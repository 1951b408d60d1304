package main

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

	"github.com/hoptrace/hoptrace/netns"
)

// markDialer dials from inside a pod's netns with SO_MARK set, so the pod's
// OUTPUT rule lets the proxy's own connections through instead of looping them
// back into the proxy.
//
// It dials the way the agent's redirect.podDialer does — only socket() on a
// thread switched into the pod's netns, the connect and its wait on an ordinary
// goroutine — so that iptables vs hoptrace compares capture and nothing else.
type markDialer struct {
	ns   *os.File // held, or its finalizer would close nsFd under us
	nsFd int
	mark int
}

func (d *markDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	dst, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: want an IP:port: %w", address, err)
	}
	conn, err := d.dial(ctx, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()))
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(dst), Err: err}
	}
	return conn, nil
}

func (d *markDialer) dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	if !dst.Addr().Is4() {
		return nil, errors.New("IPv4 only")
	}
	var fd int
	err := netns.Do(d.nsFd, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return os.NewSyscallError("socket", err)
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "pod-dial") // owns fd from here on
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, d.mark); err != nil {
		return nil, os.NewSyscallError("setsockopt SO_MARK", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return nil, os.NewSyscallError("setsockopt TCP_NODELAY", err)
	}
	sa := &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
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
		if errors.Is(werr, os.ErrDeadlineExceeded) && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, werr
	}
	if connErr != nil {
		return nil, connErr
	}
	return net.FileConn(f)
}
