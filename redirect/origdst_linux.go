package redirect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/hoptrace/hoptrace/bpf"
	"github.com/hoptrace/hoptrace/netns"
)

const (
	afInet  = 2
	afInet6 = 10
)

// OutboundResolver returns the resolver for connections accepted on a.Outbound:
// it reads (and removes) the original destination the BPF programs recorded.
func (a *Attachment) OutboundResolver() Resolver {
	return outboundResolver{t: a.r.orig, cookie: a.NetnsCookie}
}

// InboundResolver returns the resolver for connections accepted on a.Inbound. An
// sk_lookup-steered socket keeps the address the client dialled as its local address.
func (a *Attachment) InboundResolver() Resolver { return inboundResolver{} }

type outboundResolver struct {
	t      *origTable
	cookie uint64
}

func (o outboundResolver) OriginalDst(c net.Conn) (netip.AddrPort, error) {
	ra, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: not a TCP connection (%T)", c.RemoteAddr())
	}
	key := bpf.RedirectPortKey{NetnsCookie: o.cookie, Port: uint16(ra.Port), Family: afInet6}
	if ra.IP.To4() != nil {
		key.Family = afInet
	}
	dst, err := o.t.take(key)
	if errors.Is(err, ErrNoOriginalDst) {
		return netip.AddrPort{}, fmt.Errorf("connection from %s: %w", ra, err)
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("look up original destination of %s: %w", ra, err)
	}
	return dst, nil
}

type inboundResolver struct{}

func (inboundResolver) OriginalDst(c net.Conn) (netip.AddrPort, error) {
	la, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: not a TCP connection (%T)", c.LocalAddr())
	}
	return la.AddrPort(), nil
}

// OutboundDialer dials from inside the pod's netns, as the pod itself would, so the
// destination sees the pod's own address. The agent is not in the pod's cgroup,
// so its dials are not redirected again.
func (a *Attachment) OutboundDialer() Dialer { return &podDialer{netns: a} }

// InboundDialer dials the pod's local app from PassthroughAddr (IPv4) or from the
// destination address itself (IPv6), which the sk_lookup program lets through.
func (a *Attachment) InboundDialer() Dialer { return &podDialer{netns: a, passthrough: true} }

type podDialer struct {
	netns       *Attachment
	passthrough bool
}

// DialContext dials a literal IP:port from inside the pod's netns (netns.DialTCP).
func (d *podDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	dst, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s from pod %s: want an IP:port: %w", address, d.netns.Pod.ID, err)
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	conn, err := d.dial(ctx, dst)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(dst), Err: fmt.Errorf("from pod %s: %w", d.netns.Pod.ID, err)}
	}
	return conn, nil
}

func (d *podDialer) dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	var src netip.Addr
	if d.passthrough {
		src = PassthroughAddr
		if dst.Addr().Is6() {
			src = dst.Addr()
		}
	}
	// The pod may be detached meanwhile, its namespace file closed: the dial
	// holds the file while it makes its socket (a closed one fails the dial).
	conn, err := netns.DialTCPFile(ctx, d.netns.netns, src, dst, nil)
	if err == nil && d.passthrough {
		// The proxy's dial to the local app is an in-pod leg: the app's answers
		// may come straight to this socket.
		d.netns.addPeer(conn)
	}
	return conn, err
}
