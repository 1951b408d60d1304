package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// memConn is one end of an in-memory connection: what the local hand-off
// (handoff.go) gives the two proxies of a same-node hop in place of the bytes
// of the TCP connection between them. It behaves as the proxy expects of a
// socket: buffered writes that return before the peer reads (up to
// memPipeCap, like a socket's send buffer), half-close, deadlines, a reset on
// Close after SetLinger(0), and a wait for readability that reads nothing
// (peeker), so an idle hand-off holds no buffer either.
//
// carrier is the real TCP connection it stands for: made by the kernel (so
// the CNI's network policy decided on it, as for every connection), kept open
// and silent while the bytes go through memory, closed with the memConn. Its
// addresses are the ones the proxies see.
type memConn struct {
	in, out *memPipe
	rd, wd  memDeadline
	done    chan struct{} // closed by Close
	closed  atomic.Bool   // done is closed: read without a select on the hot path
	once    sync.Once
	abort   bool // SetLinger(0) was called: Close resets the peer
	carrier net.Conn
}

// memPipeCap bounds the unread bytes of one direction, as a socket's buffers
// do: a writer whose peer stops reading blocks, it does not grow the heap.
const memPipeCap = 256 << 10

// A direction with bytes in flight holds one pooled buffer: a small one for
// requests and responses that fit, a large one (memPipeCap) once a body
// streams; a direction with nothing unread holds none.
const memChunkSize = 16 << 10

var (
	memSmallPool = sync.Pool{New: func() any { b := make([]byte, 0, memChunkSize); return &b }}
	memLargePool = sync.Pool{New: func() any { b := make([]byte, 0, memPipeCap); return &b }}
)

// newMemConnPair returns the two ends of an in-memory connection standing for
// the TCP connection whose ends are a and b.
func newMemConnPair(a, b net.Conn) (*memConn, *memConn) {
	ab, ba := newMemPipe(), newMemPipe()
	return newMemConn(ba, ab, a), newMemConn(ab, ba, b)
}

func newMemConn(in, out *memPipe, carrier net.Conn) *memConn {
	return &memConn{in: in, out: out, rd: newMemDeadline(), wd: newMemDeadline(), done: make(chan struct{}), carrier: carrier}
}

// memPipe is one direction: bytes written by one end, read by the other.
type memPipe struct {
	mu       sync.Mutex
	buf      *[]byte // unread bytes are (*buf)[r:]; nil while empty
	r        int
	eof      bool          // the writer half-closed or closed
	reset    bool          // the writer closed with SetLinger(0), or the reader closed before reading all
	gone     bool          // the reader closed: writes fail
	readable chan struct{} // a token when bytes, an end or a reset came
	writable chan struct{} // a token when room was made or the reader went
}

func newMemPipe() *memPipe {
	return &memPipe{readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

// signal leaves a token in ch for the one goroutine that may wait on it. A
// waiter re-checks the state under mu after every token, so a token left
// from before only costs it one more look.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (p *memPipe) unread() int {
	if p.buf == nil {
		return 0
	}
	return len(*p.buf) - p.r
}

// read copies what is there into b; wait says there is nothing yet.
func (p *memPipe) read(b []byte) (n int, err error, wait bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.reset:
		return 0, errMemReset, false
	case p.unread() > 0:
		n = copy(b, (*p.buf)[p.r:])
		p.r += n
		if p.r == len(*p.buf) {
			p.recycle()
		}
		signal(p.writable)
		return n, nil, false
	case p.eof:
		return 0, io.EOF, false
	}
	return 0, nil, len(b) > 0
}

// recycle gives the drained buffer back; under mu.
func (p *memPipe) recycle() {
	putMemBuf(p.buf)
	p.buf, p.r = nil, 0
}

func putMemBuf(b *[]byte) {
	*b = (*b)[:0]
	if cap(*b) == memPipeCap {
		memLargePool.Put(b)
	} else {
		memSmallPool.Put(b)
	}
}

// write appends what fits of b; wait says nothing fit.
func (p *memPipe) write(b []byte) (n int, err error, wait bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone || p.eof {
		return 0, errMemPipe, false
	}
	n = min(memPipeCap-p.unread(), len(b))
	if n <= 0 {
		return 0, nil, true
	}
	switch {
	case p.buf == nil && n <= memChunkSize:
		p.buf = memSmallPool.Get().(*[]byte)
	case p.buf == nil:
		p.buf = memLargePool.Get().(*[]byte)
	case len(*p.buf)+n > cap(*p.buf):
		// Move the unread bytes to the front, into the large buffer if the
		// small one cannot take them all. Unread bytes and n are within
		// memPipeCap together, so nothing grows past it.
		unread := (*p.buf)[p.r:]
		if len(unread)+n > cap(*p.buf) {
			large := memLargePool.Get().(*[]byte)
			*large = append(*large, unread...)
			putMemBuf(p.buf)
			p.buf = large
		} else {
			*p.buf = (*p.buf)[:copy(*p.buf, unread)]
		}
		p.r = 0
	}
	*p.buf = append(*p.buf, b[:n]...)
	signal(p.readable)
	return n, nil, false
}

// ended reports what a peek would: something to read, an end, or a reset.
func (p *memPipe) ended() (unread int, eof, reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unread(), p.eof, p.reset
}

func (p *memPipe) closeWrite(reset bool) {
	p.mu.Lock()
	p.eof = true
	if reset {
		p.reset = true
		if p.buf != nil {
			p.recycle()
		}
	}
	p.mu.Unlock()
	signal(p.readable)
}

// closeRead is the reader going away: writes fail from now on. Bytes it never
// read make the writer's side see a reset, as TCP does when a socket is closed
// with unread data.
func (p *memPipe) closeRead() (unread bool) {
	p.mu.Lock()
	p.gone = true
	unread = p.unread() > 0
	if unread {
		p.recycle()
	}
	p.mu.Unlock()
	signal(p.writable)
	return unread
}

// The errors a socket would give, so that the proxy's checks (isReset, timeouts)
// read them the same way.
var (
	errMemReset = &net.OpError{Op: "read", Net: "mem", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	errMemPipe  = &net.OpError{Op: "write", Net: "mem", Err: os.NewSyscallError("write", syscall.EPIPE)}
)

func (c *memConn) closedErr(op string) error {
	return &net.OpError{Op: op, Net: "mem", Err: net.ErrClosed}
}

// ready says whether an operation may go on: not after Close, not past the
// deadline d. Atomics, not a select: it runs on every read and write.
func (c *memConn) ready(op string, d *memDeadline) error {
	switch {
	case c.closed.Load():
		return c.closedErr(op)
	case d.fired.Load():
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (c *memConn) Read(b []byte) (int, error) {
	for {
		if err := c.ready("read", &c.rd); err != nil {
			return 0, err
		}
		n, err, wait := c.in.read(b)
		if !wait {
			return n, err
		}
		select {
		case <-c.in.readable:
		case <-c.rd.expired():
		case <-c.done:
		}
	}
}

func (c *memConn) Write(b []byte) (int, error) {
	total := 0
	for {
		if err := c.ready("write", &c.wd); err != nil {
			return total, err
		}
		n, err, wait := c.out.write(b)
		total += n
		b = b[n:]
		if err != nil || len(b) == 0 {
			return total, err
		}
		if wait {
			select {
			case <-c.out.writable:
			case <-c.wd.expired():
			case <-c.done:
			}
		}
	}
}

// awaitReadable blocks until there is something to read, an end or a reset,
// reading nothing: the peeker's wait for a memConn.
func (c *memConn) awaitReadable() error {
	for {
		if err := c.ready("read", &c.rd); err != nil {
			return err
		}
		if n, eof, reset := c.in.ended(); n > 0 || eof || reset {
			return nil
		}
		select {
		case <-c.in.readable:
		case <-c.rd.expired():
		case <-c.done:
		}
	}
}

// quiet reports, without waiting, that nothing came and the peer neither
// ended nor reset: the peeker's liveness check of an idle connection.
func (c *memConn) quiet() bool {
	if c.closed.Load() {
		return false
	}
	n, eof, reset := c.in.ended()
	return n == 0 && !eof && !reset
}

// CloseWrite sends the peer an end of stream, as shutdown(SHUT_WR) does.
func (c *memConn) CloseWrite() error {
	c.out.closeWrite(false)
	return nil
}

// SetLinger(0) makes Close reset the peer instead of ending the stream.
func (c *memConn) SetLinger(sec int) error {
	c.abort = sec == 0
	if l, ok := c.carrier.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return nil
}

// Close ends both directions and closes the carrier connection.
func (c *memConn) Close() error {
	first := false
	c.once.Do(func() {
		first = true
		c.closed.Store(true)
		close(c.done)
		unread := c.in.closeRead()
		c.out.closeWrite(c.abort || unread)
		c.rd.stop()
		c.wd.stop()
	})
	if !first {
		return c.closedErr("close")
	}
	if c.carrier != nil {
		return c.carrier.Close()
	}
	return nil
}

func (c *memConn) LocalAddr() net.Addr {
	if c.carrier != nil {
		return c.carrier.LocalAddr()
	}
	return memAddr{}
}

func (c *memConn) RemoteAddr() net.Addr {
	if c.carrier != nil {
		return c.carrier.RemoteAddr()
	}
	return memAddr{}
}

func (c *memConn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *memConn) SetReadDeadline(t time.Time) error  { c.rd.set(t); return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// memDeadline is a deadline as a channel that closes when it passes (the
// scheme of net.Pipe's).
type memDeadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	passed chan struct{}
	fired  atomic.Bool // passed is closed
}

func newMemDeadline() memDeadline { return memDeadline{passed: make(chan struct{})} }

func (d *memDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.passed // the timer fired: wait until it closed the channel
	}
	d.timer = nil
	closed := isClosed(d.passed)
	if t.IsZero() {
		if closed {
			d.passed = make(chan struct{})
			d.fired.Store(false)
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.passed = make(chan struct{})
			d.fired.Store(false)
		}
		ch := d.passed
		d.timer = time.AfterFunc(dur, func() {
			d.fired.Store(true)
			close(ch)
		})
		return
	}
	if !closed {
		d.fired.Store(true)
		close(d.passed)
	}
}

func (d *memDeadline) expired() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passed
}

func (d *memDeadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && d.timer.Stop() {
		d.timer = nil
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// memOf returns the memConn beneath c, or nil when c is a socket.
func memOf(c net.Conn) *memConn {
	if cc, ok := c.(*countingConn); ok {
		c = cc.Conn
	}
	m, _ := c.(*memConn)
	return m
}
