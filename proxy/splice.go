package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// serveOpaque relays a connection the proxy does not understand: TLS, databases,
// anything. Nothing is parsed; bytes are only counted.
// up, when not nil, is an upstream connection dialed already (detectLate).
func (p *Proxy) serveOpaque(c net.Conn, br *bufio.Reader, fl *flow, dst netip.AddrPort, up net.Conn) {
	if up == nil {
		var err error
		if up, err = p.dial(context.Background(), dst.String()); err != nil {
			// A reset, as the client would have got without the proxy.
			abort(c)
			p.log.Debug("opaque upstream unreachable", "dst", dst, "err", err)
			return
		}
	}
	defer up.Close()
	prefix := take(br)
	if splice(c, prefix, up, nil, &fl.in, &fl.out, p.cfg.SpliceIdleTimeout) {
		fl.silent.Store(true)
		p.log.Debug("closed silent connection", "dst", dst, "idle", p.cfg.SpliceIdleTimeout)
	}
}

// take returns a copy of the bytes br has buffered and empties it, so the
// connection beneath can be read directly again.
func take(br *bufio.Reader) []byte {
	if br == nil {
		return nil
	}
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	out := append([]byte(nil), b...)
	br.Discard(n)
	return out
}

// splice relays bytes both ways between client and upstream until both directions
// have ended. prefixes are bytes already read from each side. A direction that ends
// cleanly becomes a half-close on the other side, so protocols that shut down their
// write side and then wait for the answer work; an error on either side (a reset,
// say) tears down both, and a reset is passed on as a reset. in and out, when not
// nil, count the bytes read from and written to the client, prefixes aside (whoever
// read them counted them). When idle is positive and neither side sends anything
// for that long, both are closed and splice reports true.
func splice(client net.Conn, clientPrefix []byte, upstream net.Conn, upstreamPrefix []byte, in, out *atomic.Int64, idle time.Duration) (silent bool) {
	var q *quiet
	if idle > 0 {
		q = &quiet{timeout: idle}
		q.heard(time.Now())
	}
	toUpstream := &relay{dst: upstream, src: client, prefix: clientPrefix, count: in, quiet: q}
	toClient := &relay{dst: client, src: upstream, prefix: upstreamPrefix, count: out, quiet: q}
	done := make(chan struct{})
	go toUpstream.run(done)
	toClient.run(nil)
	<-done
	return q != nil && q.expired.Load()
}

// quiet is the idle timeout both directions of a splice share: a direction
// that has waited the whole timeout closes the splice only if the other one
// has not spoken meanwhile. Deadlines are set once per burst of reads, not per
// read.
type quiet struct {
	timeout time.Duration
	last    atomic.Int64 // unix nanoseconds of the latest bytes either way
	expired atomic.Bool
}

func (q *quiet) heard(now time.Time) { q.last.Store(now.UnixNano()) }

func (q *quiet) lastHeard() time.Time { return time.Unix(0, q.last.Load()) }

// silentSince reports whether nothing was heard in the timeout before now.
func (q *quiet) silentSince(now time.Time) bool {
	return now.UnixNano()-q.last.Load() >= int64(q.timeout)
}

// errSilent ends a direction of a splice that the idle timeout closed.
var errSilent = errors.New("splice idle timeout")

// relay copies one direction of a splice.
type relay struct {
	dst, src net.Conn
	prefix   []byte
	count    *atomic.Int64
	quiet    *quiet // nil: no idle timeout
}

func (r *relay) run(done chan<- struct{}) {
	if done != nil {
		defer close(done)
	}
	err := r.copy()
	if err == nil {
		if closeWrite(r.dst) == nil {
			return
		}
	}
	if isReset(err) {
		abort(r.dst)
	}
	// Unblocks the other direction.
	r.src.Close()
	r.dst.Close()
}

// copy moves bytes until src reports EOF (nil) or an error. It waits for input
// holding no buffer, so idle connections (a pool of database connections, say)
// cost no memory, and counts every read, so byte counters are live.
func (r *relay) copy() error {
	if len(r.prefix) > 0 {
		if _, err := r.dst.Write(r.prefix); err != nil {
			return err
		}
	}
	waiter := newPeeker(r.src)
	q := r.quiet
	var deadline time.Time
	for {
		if q != nil {
			// One deadline per burst of reads, from the latest bytes either way.
			if d := q.lastHeard().Add(q.timeout); !d.Equal(deadline) {
				deadline = d
				r.src.SetReadDeadline(d)
			}
		}
		// Not a socket: wait returns at once and drain's read waits instead.
		err := waiter.wait()
		if err == nil {
			buf := getCopyBuf()
			var moved bool
			moved, err = r.drain(*buf)
			putCopyBuf(buf)
			if moved && q != nil {
				q.heard(time.Now())
			}
			if err == io.EOF {
				return nil
			}
		}
		if q != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			if q.silentSince(time.Now()) {
				q.expired.Store(true)
				return errSilent
			}
			continue // the other direction spoke meanwhile
		}
		if err != nil {
			return err
		}
	}
}

func (r *relay) drain(buf []byte) (moved bool, err error) {
	for {
		n, err := r.src.Read(buf)
		if n > 0 {
			moved = true
			if r.count != nil {
				r.count.Add(int64(n))
			}
			if _, werr := r.dst.Write(buf[:n]); werr != nil {
				return moved, werr
			}
		}
		if err != nil {
			return moved, err
		}
		if n < len(buf) {
			return moved, nil
		}
	}
}

// closeWrite half-closes c, or closes it when it cannot half-close.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// abort makes the next Close send a reset instead of a FIN.
func abort(c net.Conn) {
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
