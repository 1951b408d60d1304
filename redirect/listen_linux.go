package redirect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// listenLoopback opens a TCP listener on addr. The listeners live in a pod's netns
// and are reached through the BPF programs, never by name.
func listenLoopback(addr netip.AddrPort) (*net.TCPListener, error) {
	// Go defaults listeners to MPTCP, and an MPTCP socket cannot enter a SOCKHASH.
	// No keep-alive probes on accepted connections: the app's own socket has
	// whatever it set, and the four setsockopt calls per accept are measurable.
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	network := "tcp4"
	if addr.Addr().Is6() {
		network = "tcp6"
	}
	ln, err := lc.Listen(context.Background(), network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln.(*net.TCPListener), nil
}

// socketFD runs fn with a listener's fd without File(), which would make it blocking.
func socketFD(sc syscall.Conn, fn func(fd int) error) error {
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// dualListener merges a pod's IPv4 and (when the pod has IPv6 loopback) IPv6
// listeners into one net.Listener. Its accept loops start with the first
// Accept: a caller that serves each listener itself (listeners) pays no
// hand-over between goroutines per connection.
type dualListener struct {
	v4, v6  *net.TCPListener
	conns   chan net.Conn
	errs    chan error
	done    chan struct{}
	mu      sync.Mutex // started, closed: loops start only before Close
	started bool
	closed  bool
	once    sync.Once
	wg      sync.WaitGroup
	// onAccept, when set, sees each accepted connection before the proxy does.
	onAccept func(net.Conn)
}

func newDualListener(v4, v6 *net.TCPListener, onAccept func(net.Conn)) *dualListener {
	return &dualListener{v4: v4, v6: v6, conns: make(chan net.Conn), errs: make(chan error, 2), done: make(chan struct{}), onAccept: onAccept}
}

// listeners returns the listeners one by one, each calling onAccept.
func (d *dualListener) listeners() []net.Listener {
	var out []net.Listener
	for _, ln := range d.each() {
		out = append(out, &hookListener{ln, d.onAccept})
	}
	return out
}

// each returns the listeners there are: IPv4, and IPv6 when the pod has it.
func (d *dualListener) each() []*net.TCPListener {
	var out []*net.TCPListener
	for _, ln := range []*net.TCPListener{d.v4, d.v6} {
		if ln != nil {
			out = append(out, ln)
		}
	}
	return out
}

// hookListener calls onAccept (if set) with each connection it accepts. A
// pointer: listeners are map keys (the proxy tracks them), and a func is not
// comparable.
type hookListener struct {
	*net.TCPListener
	onAccept func(net.Conn)
}

func (l *hookListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err == nil && l.onAccept != nil {
		l.onAccept(c)
	}
	return c, err
}

func (d *dualListener) acceptLoop(ln *net.TCPListener) {
	defer d.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case d.errs <- err:
			case <-d.done:
			}
			return
		}
		if d.onAccept != nil {
			d.onAccept(c)
		}
		select {
		case d.conns <- c:
		case <-d.done:
			c.Close()
			return
		}
	}
}

func (d *dualListener) Accept() (net.Conn, error) {
	d.mu.Lock()
	if !d.started && !d.closed {
		d.started = true
		for _, ln := range d.each() {
			d.wg.Add(1)
			go d.acceptLoop(ln)
		}
	}
	d.mu.Unlock()
	select {
	case c := <-d.conns:
		return c, nil
	case <-d.done:
		return nil, net.ErrClosed
	case err := <-d.errs:
		return nil, err
	}
}

func (d *dualListener) Close() error {
	var err error
	d.once.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		close(d.done)
		err = errors.Join(closeIf(d.v4), closeIf(d.v6))
		d.wg.Wait()
	})
	return err
}

func closeIf(ln *net.TCPListener) error {
	if ln == nil {
		return nil
	}
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Addr is the IPv4 listener's address; it is only informative.
func (d *dualListener) Addr() net.Addr {
	if d.v4 != nil {
		return d.v4.Addr()
	}
	return d.v6.Addr()
}
