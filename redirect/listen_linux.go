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
// listener into one net.Listener for the proxy.
type dualListener struct {
	v4, v6 *net.TCPListener
	conns  chan net.Conn
	errs   chan error
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	// onAccept, when set, sees each accepted connection before the proxy does.
	onAccept func(net.Conn)
}

func newDualListener(v4, v6 *net.TCPListener, onAccept func(net.Conn)) *dualListener {
	d := &dualListener{v4: v4, v6: v6, conns: make(chan net.Conn), errs: make(chan error, 2), done: make(chan struct{}), onAccept: onAccept}
	for _, ln := range []*net.TCPListener{v4, v6} {
		if ln == nil {
			continue
		}
		d.wg.Add(1)
		go d.acceptLoop(ln)
	}
	return d
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
