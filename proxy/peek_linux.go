package proxy

import (
	"net"
	"os"
	"syscall"
)

// Both functions peek at a socket with MSG_PEEK: they learn about it without
// consuming anything, so no buffer needs to be held while a connection is idle.

// alive reports whether an idle upstream connection is still usable: the peer
// has not closed or reset it, and has not sent anything unasked (a late "408"
// from a server that timed it out, say). One non-blocking peek, no waiting; what
// it needs is made once per connection, so the check allocates nothing.
func (u *upstream) alive() bool {
	if u.peek == nil {
		rc, ok := rawConn(u.conn)
		if !ok {
			return true
		}
		u.peek = &livenessPeek{rc: rc}
		u.peek.fn = u.peek.once
	}
	p := u.peek
	return p.rc.Read(p.fn) == nil && p.live
}

// livenessPeek is one connection's liveness check.
type livenessPeek struct {
	rc   syscall.RawConn
	fn   func(fd uintptr) bool // once, bound: what RawConn.Read calls
	b    [1]byte
	live bool
}

func (p *livenessPeek) once(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	p.live = err == syscall.EAGAIN
	return true // never wait
}

// waitReadable blocks until c has bytes (or an end, or an error) to read. It
// honours read deadlines and returns when c is closed.
func waitReadable(c net.Conn) error {
	rc, ok := rawConn(c)
	if !ok {
		return nil // the read itself will wait
	}
	var b [1]byte
	var peekErr error
	err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case syscall.EAGAIN:
			return false
		case nil, syscall.EINTR:
		default:
			// The kernel reports a socket error (a reset) once: to this peek.
			peekErr = os.NewSyscallError("recvfrom", err)
		}
		return true
	})
	if err != nil {
		return err
	}
	return peekErr
}

func rawConn(c net.Conn) (syscall.RawConn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil
}
