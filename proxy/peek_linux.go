package proxy

import (
	"net"
	"os"
	"syscall"

	"github.com/hoptrace/hoptrace/internal/rawsock"
)

// peeker looks at a socket with MSG_PEEK: it learns about the connection
// without consuming anything, so no buffer needs to be held while the
// connection is idle. Made once per connection, its checks allocate nothing.
type peeker struct {
	rc           syscall.RawConn // nil: not a socket
	mem          *memConn        // a local hand-off's connection: waited on in memory
	await, probe func(fd uintptr) bool
	errno        error // what the last peek returned
	woken        bool  // wait's first look found nothing, and readiness came since

	// waitAfter's: the send still to make (nil once made), and its outcome.
	sendThenAwait func(fd uintptr) bool
	send          func() error
	sendErr       error
}

func newPeeker(c net.Conn) *peeker {
	p := new(peeker)
	if p.mem = memOf(c); p.mem != nil {
		return p
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return p
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return p
	}
	p.rc = rc
	// What RawConn.Read calls: await returns false on EAGAIN, so that Read
	// waits for readiness and calls again; probe never waits. Called again,
	// after the poller said the socket is readable, await does not look a
	// second time: the read that follows wait finds out what came (bytes, an
	// end, an error), one syscall per wake-up fewer on every kept-alive
	// request. A spurious wake-up only makes that read wait, as reads do.
	p.await = func(fd uintptr) bool {
		if p.woken {
			return true
		}
		if p.peek(fd) != syscall.EAGAIN {
			return true
		}
		p.woken = true
		return false
	}
	p.probe = func(fd uintptr) bool { p.peek(fd); return true }
	p.sendThenAwait = func(uintptr) bool {
		send := p.send
		if send == nil {
			return true // woken: the read that follows finds out what came
		}
		p.send = nil
		p.sendErr = send()
		return p.sendErr != nil
	}
	return p
}

func (p *peeker) peek(fd uintptr) error {
	_, e := rawsock.Peek(fd)
	p.errno = nil
	if e != 0 {
		p.errno = e
	}
	return p.errno
}

// wait blocks until the connection has bytes (or an end, or an error) to read.
// It honours read deadlines and returns when the connection is closed. On
// anything but a socket it returns at once: the read itself will wait.
func (p *peeker) wait() error {
	if p.mem != nil {
		return p.mem.awaitReadable()
	}
	if p.rc == nil {
		return nil
	}
	p.woken = false
	err := p.rc.Read(p.await)
	if p.woken {
		p.errno = nil // the read that follows reports what came
	}
	if err != nil {
		return err
	}
	switch p.errno {
	case nil, syscall.EINTR:
		return nil
	}
	// The kernel reports a socket error (a reset) once: to this peek.
	return os.NewSyscallError("recvfrom", p.errno)
}

// waitAfter calls send, then waits as wait does but without a look at the
// socket first. RawConn.Read forgets the poller's earlier readiness as it
// begins, and send runs inside it: whatever the peer sends after send wakes
// the wait. For a whole request that send puts on the wire, that is any answer
// to it. (Bytes the peer sent unasked before are seen once more come or the
// connection ends: the pool looks for those, see upstream.alive and clean.)
// An error of send is returned as it is.
func (p *peeker) waitAfter(send func() error) error {
	if !p.canWaitAfter() {
		if err := send(); err != nil {
			return err
		}
		return p.wait()
	}
	p.send, p.sendErr = send, nil
	err := p.rc.Read(p.sendThenAwait)
	sendErr := p.sendErr
	p.send, p.sendErr = nil, nil
	if sendErr != nil {
		return sendErr
	}
	return err
}

// canWaitAfter reports whether waitAfter saves its look: a socket.
func (p *peeker) canWaitAfter() bool { return p.mem == nil && p.rc != nil }

// idle reports, without waiting, that the connection has nothing to read and
// has not ended or failed: an idle upstream connection that is still usable,
// whose peer did not close it or send anything unasked (a late "408" from a
// server that timed it out, say). Not a socket: true.
func (p *peeker) idle() bool {
	if p.mem != nil {
		return p.mem.quiet()
	}
	if p.rc == nil {
		return true
	}
	return p.rc.Read(p.probe) == nil && p.errno == syscall.EAGAIN
}

// canWait reports whether wait really waits: the connection is a socket or a
// memConn. Otherwise the read itself has to.
func (p *peeker) canWait() bool { return p.mem != nil || p.rc != nil }
