//go:build unix

package exporter

import (
	"net"
	"syscall"
)

// peekPending looks, without reading or waiting, whether c has bytes to read
// (pending) and whether it is still open (alive: false once the peer closed
// it or it broke).
func peekPending(c net.Conn) (pending, alive bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, true
	}
	var n int
	var perr error
	if err := rc.Read(func(fd uintptr) bool {
		n, perr = peekByte(fd)
		return true // never wait
	}); err != nil {
		return false, false
	}
	switch {
	case perr == syscall.EAGAIN || perr == syscall.EINTR:
		return false, true
	case perr != nil:
		return false, false
	case n == 0:
		return false, false // end of stream
	}
	return true, true
}
