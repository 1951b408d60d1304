package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// sock is a TCP connection whose reads and writes are made as raw system
// calls, without entering the Go scheduler's syscall state.
//
// Why: the proxy's sockets are non-blocking, so a read or write returns at
// once whatever the peer does; but a write on loopback (or into a veth) runs
// the receiver's TCP stack in the writer's context and often lasts longer
// than one tick of the runtime's monitor (20 µs). The monitor then hands the
// writer's P to another thread (a futex wake-up, a spinning thread, and a
// second hand-over back when the write returns), and keeps ticking every
// 20 µs for as long as it finds such Ps. Measured with perf on the agent at
// http-max: the monitor and those hand-overs were a tenth of the agent's CPU.
// A raw call keeps the P: the call cannot block, so nothing else waits on it
// longer than the kernel's own work.
//
// Waiting stays the netpoller's (syscall.RawConn), so deadlines, Close and
// readiness behave as for net.TCPConn; every other method is the
// *net.TCPConn's.
type sock struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu     sync.Mutex // one Read at a time uses the fields below
	rbuf    []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(fd uintptr) bool
	wmu     sync.Mutex // one Write at a time uses the fields below
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool
}

// newSock wraps c when it is a TCP socket; anything else is returned as is.
func newSock(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &sock{TCPConn: tc, rc: rc}
	s.readFn = s.read
	s.writeFn = s.write
	return s
}

// read is RawConn.Read's callback: false asks it to wait for readiness.
func (s *sock) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case 0:
			s.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.rerr = e
		return true
	}
}

func (s *sock) write(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&s.wbuf[s.wn])), uintptr(len(s.wbuf)-s.wn))
		switch e {
		case 0:
			s.wn += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		s.werr = e
		return true
	}
	return true
}

// Read reads as net.TCPConn's does: io.EOF at the end, *net.OpError otherwise.
func (s *sock) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	s.rbuf, s.rn, s.rerr = b, 0, 0
	err := s.rc.Read(s.readFn)
	n, errno := s.rn, s.rerr
	s.rbuf = nil
	s.rmu.Unlock()
	switch {
	case err != nil:
		return 0, s.opError("read", err)
	case errno != 0:
		return 0, s.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting for room as net.TCPConn's does.
func (s *sock) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.wmu.Lock()
	s.wbuf, s.wn, s.werr = b, 0, 0
	err := s.rc.Write(s.writeFn)
	n, errno := s.wn, s.werr
	s.wbuf = nil
	s.wmu.Unlock()
	switch {
	case err != nil:
		return n, s.opError("write", err)
	case errno != 0:
		return n, s.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError gives err the shape net.TCPConn's errors have: RawConn reports the
// poller's errors (a deadline, a closed connection) wrapped as "raw-read".
func (s *sock) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// SyscallConn is the socket's, for peeking and socket options.
func (s *sock) SyscallConn() (syscall.RawConn, error) { return s.rc, nil }
