package proxy

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxIdlePerDst bounds the idle HTTP/1 connections kept per destination.
const maxIdlePerDst = 64

// upstream is one HTTP/1 connection to an original destination.
type upstream struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	dst    netip.AddrPort
	idleAt time.Time
	reused bool    // it served a request before: it may have gone stale meanwhile
	peek   *peeker // made on first use (a wait, a liveness check)

	// A request that is whole in bw (head, and body if any) stays there until
	// the wait for its response begins, and goes out from inside that wait
	// (peeker.waitAfter): the wait needs no look at the socket first, as
	// nothing can have answered yet. One syscall fewer on every request.
	sent     int64        // bytes written to conn through bw
	deferred bool         // bw holds a whole request, for awaitResponse to send
	sentAt   time.Time    // when the deferred request went out
	send     func() error // sendDeferred, bound once
}

// sendError is a failure to send the request, met in awaitResponse.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// newUpstream wraps a new connection. Its buffers come from the pools when
// needed (writer, awaitResponse) and go back as soon as they are not: a
// request waiting for its response holds none, and a burst of slow requests
// costs the node no buffers.
func newUpstream(c net.Conn, dst netip.AddrPort) *upstream {
	u := &upstream{conn: c, dst: dst}
	u.send = u.sendDeferred
	return u
}

// Write is bw's destination: conn, counted, so that writeRequest can tell
// whether any of a request went out before its wait.
func (u *upstream) Write(b []byte) (int, error) {
	n, err := u.conn.Write(b)
	u.sent += int64(n)
	return n, err
}

// deferSend reports whether a whole request in bw can wait there for
// awaitResponse: nothing of it went out yet (sent is still before) and u is a
// socket the peeker can wait on without a look first.
func (u *upstream) deferSend(before int64) bool {
	if u.sent != before {
		return false
	}
	if !u.peeker().canWaitAfter() {
		return false
	}
	u.deferred, u.sentAt = true, time.Time{}
	return true
}

// peeker returns u's peeker, made on first use.
func (u *upstream) peeker() *peeker {
	if u.peek == nil {
		u.peek = newPeeker(u.conn)
	}
	return u.peek
}

// sendDeferred sends the request bw holds.
func (u *upstream) sendDeferred() error {
	if err := u.bw.Flush(); err != nil {
		return &sendError{err}
	}
	u.sentAt = time.Now()
	u.releaseWriter()
	return nil
}

// writer returns u's writer, from the pool if u has none.
func (u *upstream) writer() *bufio.Writer {
	if u.bw == nil {
		u.bw = getWriter(u)
	}
	return u.bw
}

// releaseWriter gives back the writer of a request that is out.
func (u *upstream) releaseWriter() {
	if u.bw != nil && u.bw.Buffered() == 0 {
		putWriter(u.bw)
		u.bw = nil
	}
}

// awaitResponse waits for the first byte of the response, holding no buffer
// while the app works, and leaves u with a reader that has it.
//
// A deferred request (deferSend) goes out first; its failure is a *sendError.
func (u *upstream) awaitResponse() error {
	deferred := u.deferred
	u.deferred = false
	if u.br == nil || u.br.Buffered() == 0 {
		putReader(u.br)
		u.br = nil
		var err error
		if deferred {
			err = u.peeker().waitAfter(u.send)
		} else {
			err = u.peeker().wait()
		}
		if err != nil {
			return err
		}
		u.br = getReader(u.conn)
	} else if deferred {
		if err := u.send(); err != nil {
			return err
		}
	}
	_, err := u.br.Peek(1)
	return err
}

// park lets go of the buffers while u waits in the pool, unless the peer sent
// something unasked (then alive fails it, and nothing read is lost meanwhile).
func (u *upstream) park() {
	if u.br != nil && u.br.Buffered() > 0 || u.bw != nil && u.bw.Buffered() > 0 {
		return
	}
	putReader(u.br)
	putWriter(u.bw)
	u.br, u.bw = nil, nil
}

// alive reports whether an idle upstream connection is still usable (see
// peeker.idle): one non-blocking peek.
func (u *upstream) alive() bool {
	return u.peeker().idle()
}

// clean reports whether nothing is left unread on u after a response. What the
// reader holds is free to check; the socket is asked too (one non-blocking peek)
// after a response that has no body by rule (to HEAD, a 204, a 304), where a
// sloppy server's stray body is most likely still on its way. A length the
// server declared itself, zero included, is taken at its word: bytes beyond it
// are caught when they came with the response, as for any Content-Length, and
// a peek on every "Content-Length: 0" answer was a syscall on each request of
// the APIs that answer that way.
func (u *upstream) clean(framed bool) bool {
	if u.br != nil && u.br.Buffered() > 0 {
		return false
	}
	return framed || u.alive()
}

// pool keeps idle upstream HTTP/1 connections per destination. A Proxy serves one
// pod, so this is reuse per (pod, destination).
type pool struct {
	mu      sync.Mutex
	idle    map[netip.AddrPort][]*upstream
	n       int
	timeout time.Duration
	sweep   *time.Timer
	closed  bool
}

func newPool(timeout time.Duration) *pool {
	return &pool{idle: make(map[netip.AddrPort][]*upstream), timeout: timeout}
}

// get returns a live idle connection to dst, most recently used first, or nil.
func (p *pool) get(dst netip.AddrPort) *upstream {
	for {
		p.mu.Lock()
		list := p.idle[dst]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		u := list[len(list)-1]
		list[len(list)-1] = nil
		p.idle[dst] = list[:len(list)-1]
		p.n--
		p.mu.Unlock()
		// The peer may have closed it while idle (Node.js closes after 5s): checking
		// costs one non-blocking peek, a failed request costs far more. A
		// connection idle for less than peekAfter is taken as alive without the
		// syscall: servers do not close that fast, and a replayable request is
		// retried anyway if one did.
		idle := time.Since(u.idleAt)
		if idle < p.timeout && (idle < peekAfter || u.alive()) {
			u.reused = true
			return u
		}
		u.conn.Close()
	}
}

// peekAfter is the idle time from which a pooled connection is checked before reuse.
const peekAfter = time.Second

// put makes u available for reuse, or closes it when the pool is full or closed.
func (p *pool) put(u *upstream) {
	u.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle[u.dst]) >= maxIdlePerDst {
		p.mu.Unlock()
		u.conn.Close()
		return
	}
	u.park()
	p.idle[u.dst] = append(p.idle[u.dst], u)
	p.n++
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.timeout, p.expire)
	}
	p.mu.Unlock()
}

// expire closes connections idle longer than the timeout, and re-arms itself
// while any remain.
func (p *pool) expire() {
	cutoff := time.Now().Add(-p.timeout)
	var stale []*upstream
	p.mu.Lock()
	for dst, list := range p.idle {
		keep := list[:0]
		for _, u := range list {
			if u.idleAt.Before(cutoff) {
				stale = append(stale, u)
			} else {
				keep = append(keep, u)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(p.idle, dst)
		} else {
			p.idle[dst] = keep
		}
	}
	p.n -= len(stale)
	if p.n > 0 && !p.closed {
		p.sweep.Reset(p.timeout / 2)
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, u := range stale {
		u.conn.Close()
	}
}

func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = make(map[netip.AddrPort][]*upstream)
	p.n = 0
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, list := range idle {
		for _, u := range list {
			u.conn.Close()
		}
	}
}
