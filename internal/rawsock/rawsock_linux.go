// Package rawsock makes a TCP connection's reads and writes raw system calls,
// without entering the Go scheduler's syscall state; waiting, deadlines and
// Close stay the netpoller's. The proxy wraps every connection it serves or
// dials, and the exporter its connection to the collector; Peek is their
// look at a socket, raw for the same reason.
package rawsock

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// conn is a TCP connection whose reads and writes are made as raw system
// calls, without entering the Go scheduler's syscall state.
//
// Why: Go's sockets are non-blocking, so a read or write returns at
// once whatever the peer does; but a write on loopback (or into a veth) runs
// the receiver's TCP stack in the writer's context and often lasts longer
// than one tick of the runtime's monitor (20 µs). The monitor then hands the
// writer's P to another thread (a futex wake-up, a spinning thread, and a
// second hand-over back when the write returns), and keeps ticking every
// 20 µs for as long as it finds such Ps. Measured with perf on the agent at
// http-max: the monitor and those hand-overs were a tenth of the agent's CPU,
// and the exporter's writes of whole batches to the collector brought them
// back for the traced agent (runtime.sysmon 3 % of its samples against 0.4 %
// untraced). A raw call keeps the P: the call cannot block, so nothing else
// waits on it longer than the kernel's own work.
//
// Waiting stays the netpoller's (syscall.RawConn), so deadlines, Close and
// readiness behave as for net.TCPConn; every other method is the
// *net.TCPConn's.
type conn struct {
	*net.TCPConn
	rc     syscall.RawConn
	reads  op
	writes op
}

// op is one direction's call in progress: RawConn calls back with the fd,
// so the buffer and the outcome live here, one call at a time.
type op struct {
	mu    sync.Mutex
	trap  uintptr // SYS_READ or SYS_WRITE
	whole bool    // write all of buf, not just what is there
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool // call, bound once per connection
}

// Wrap wraps c when it is a *net.TCPConn; anything else is returned as is.
// What a *net.TCPConn offers beyond net.Conn (CloseWrite, SetLinger,
// SyscallConn for peeks and socket options) stays available.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &conn{TCPConn: tc, rc: rc}
	s.reads.trap = syscall.SYS_READ
	s.writes.trap, s.writes.whole = syscall.SYS_WRITE, true
	s.reads.fn, s.writes.fn = s.reads.call, s.writes.call
	return s
}

// call is the RawConn callback of o's direction: read(2) until something
// came (or the end), write(2) until all of buf went; false asks RawConn to
// wait for readiness and call again.
func (o *op) call(fd uintptr) bool {
	for o.n < len(o.buf) {
		n, _, e := syscall.RawSyscall(o.trap, fd, uintptr(unsafe.Pointer(&o.buf[o.n])), uintptr(len(o.buf)-o.n))
		switch e {
		case 0:
			o.n += int(n)
			if !o.whole {
				return true
			}
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			o.errno = e
			return true
		}
	}
	return true
}

// do runs o's callback on b through call (the RawConn's Read or Write) and
// returns what it did, errors shaped as net.TCPConn's (*net.OpError).
func (s *conn) do(o *op, name string, b []byte, call func(func(uintptr) bool) error) (int, error) {
	o.mu.Lock()
	o.buf, o.n, o.errno = b, 0, 0
	err := call(o.fn)
	n, errno := o.n, o.errno
	o.buf = nil
	o.mu.Unlock()
	switch {
	case err != nil:
		return n, s.opError(name, err)
	case errno != 0:
		return n, s.opError(name, os.NewSyscallError(name, errno))
	}
	return n, nil
}

// Read reads as net.TCPConn's does: io.EOF at the end, *net.OpError otherwise.
func (s *conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := s.do(&s.reads, "read", b, s.rc.Read)
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of b, waiting for room as net.TCPConn's does.
func (s *conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return s.do(&s.writes, "write", b, s.rc.Write)
}

// opError gives err the shape net.TCPConn's errors have: RawConn reports the
// poller's errors (a deadline, a closed connection) wrapped as "raw-read".
func (s *conn) opError(name string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: name, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// SyscallConn is the socket's, for peeking and socket options.
func (s *conn) SyscallConn() (syscall.RawConn, error) { return s.rc, nil }

// Peek looks at the socket fd with MSG_PEEK|MSG_DONTWAIT: one byte is there
// (n 1), the peer has closed it (n 0), or errno says why not (EAGAIN: nothing
// yet). It never waits, and as a raw call it never enters the scheduler's
// syscall state: leaving that state when the process's Ps had all gone idle
// wakes the runtime's monitor (sysmon) into 20 µs steps, and one such peek per
// export batch cost the traced agent 1.5 µs of CPU per request at http-max.
func Peek(fd uintptr) (n int, errno syscall.Errno) {
	var b [1]byte
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return int(r), e
}
