package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
)

// serveOpaque relays a connection the proxy does not understand: TLS, databases,
// anything. Nothing is parsed; bytes are only counted.
func (p *Proxy) serveOpaque(c net.Conn, br *bufio.Reader, fl *flow, dst netip.AddrPort) {
	up, err := p.dial(context.Background(), dst.String())
	if err != nil {
		// A reset, as the client would have got without the proxy.
		abort(c)
		p.log.Debug("opaque upstream unreachable", "dst", dst, "err", err)
		return
	}
	defer up.Close()
	prefix := take(br)
	splice(c, prefix, up, nil, &fl.in, &fl.out)
}

// take returns a copy of the bytes br has buffered and empties it, so the
// connection beneath can be read directly again.
func take(br *bufio.Reader) []byte {
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
// read them counted them).
func splice(client net.Conn, clientPrefix []byte, upstream net.Conn, upstreamPrefix []byte, in, out *atomic.Int64) {
	toUpstream := &relay{dst: upstream, src: client, prefix: clientPrefix, count: in}
	toClient := &relay{dst: client, src: upstream, prefix: upstreamPrefix, count: out}
	done := make(chan struct{})
	go toUpstream.run(done)
	toClient.run(nil)
	<-done
}

// relay copies one direction of a splice.
type relay struct {
	dst, src net.Conn
	prefix   []byte
	count    *atomic.Int64
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
	for {
		if err := waiter.wait(); err != nil {
			return err
		}
		buf := getCopyBuf()
		err := r.drain(*buf)
		putCopyBuf(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// drain moves what src has now, going on while reads fill the buffer (a bulk
// transfer) and returning once a read comes up short (the sender paused).
func (r *relay) drain(buf []byte) error {
	for {
		n, err := r.src.Read(buf)
		if n > 0 {
			if r.count != nil {
				r.count.Add(int64(n))
			}
			if _, werr := r.dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
		if n < len(buf) {
			return nil
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
