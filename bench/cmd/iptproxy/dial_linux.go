package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/netns"
)

// markDialer dials from inside a pod's netns with SO_MARK set, so the pod's
// OUTPUT rule lets the proxy's own connections through instead of looping them
// back into the proxy.
//
// It dials with netns.DialTCP, as the agent's redirect.podDialer does, so that
// iptables vs hoptrace compares capture and nothing else.
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
	return netns.DialTCP(ctx, d.nsFd, netip.Addr{}, dst, func(fd int) error {
		return os.NewSyscallError("setsockopt SO_MARK", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, d.mark))
	})
}
