package main

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// originalDst reads where a REDIRECTed connection was going from conntrack,
// with getsockopt(SOL_IP, SO_ORIGINAL_DST): what an iptables-captured proxy does
// for every accepted connection. IPv4 only, like the benchmark's pods.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: not a TCP connection (%T)", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var sa *unix.IPv6Mreq
	var serr error
	if err := rc.Control(func(fd uintptr) {
		// The kernel writes a sockaddr_in; IPv6Mreq is merely a 20-byte buffer
		// x/sys/unix knows how to fill.
		sa, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", serr)
	}
	b := sa.Multiaddr // family (2 bytes), port (big endian), IPv4 address
	port := uint16(b[2])<<8 | uint16(b[3])
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
}
