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

// readWaiter waits until a connection has bytes (or an end, or an error) to
// read, without reading them: a connection that waits holds no buffer. Made once
// per connection, a wait allocates nothing.
type readWaiter struct {
	rc      syscall.RawConn // nil: not a socket, the read itself will wait
	fn      func(fd uintptr) bool
	b       [1]byte
	peekErr error
}

func newReadWaiter(c net.Conn) *readWaiter {
	w := new(readWaiter)
	if rc, ok := rawConn(c); ok {
		w.rc = rc
		w.fn = w.peek
	}
	return w
}

// wait blocks until the connection is readable. It honours read deadlines and
// returns when the connection is closed.
func (w *readWaiter) wait() error {
	if w.rc == nil {
		return nil
	}
	w.peekErr = nil
	if err := w.rc.Read(w.fn); err != nil {
		return err
	}
	return w.peekErr
}

func (w *readWaiter) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), w.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch err {
	case syscall.EAGAIN:
		return false // RawConn.Read waits for readiness and calls again
	case nil, syscall.EINTR:
	default:
		// The kernel reports a socket error (a reset) once: to this peek.
		w.peekErr = os.NewSyscallError("recvfrom", err)
	}
	return true
}

func rawConn(c net.Conn) (syscall.RawConn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	return rc, err == nil
}
