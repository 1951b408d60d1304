package redirect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

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
	return outboundResolver{m: a.r.maps.OrigByPort, cookie: a.NetnsCookie}
}

// InboundResolver returns the resolver for connections accepted on a.Inbound. An
// sk_lookup-steered socket keeps the address the client dialled as its local address.
func (a *Attachment) InboundResolver() Resolver { return inboundResolver{} }

type outboundResolver struct {
	m      *ebpf.Map
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
	var od bpf.RedirectOrigDst
	// Lookup-and-delete keeps the map small: each record is read exactly once.
	if err := o.m.LookupAndDelete(&key, &od); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return netip.AddrPort{}, fmt.Errorf("connection from %s: %w", ra, ErrNoOriginalDst)
		}
		return netip.AddrPort{}, fmt.Errorf("look up original destination of %s: %w", ra, err)
	}
	return netip.AddrPortFrom(fromBPFAddr(od.Ip), od.Port), nil
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

// DialContext dials a literal IP:port. Only the socket is created inside the
// pod's netns (a socket keeps its netns for life); the connect and its wait
// happen on an ordinary goroutine. Waiting for the handshake on a thread locked
// into the netns would make every wake-up a costly hand-off to that thread.
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
	family := unix.AF_INET
	if dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	var fd int
	err := netns.Do(int(d.netns.netns.Fd()), func() (err error) {
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return os.NewSyscallError("socket", err)
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "pod-dial") // owns fd from here on
	defer f.Close()
	// Go's own TCP dials disable Nagle; keep that for request/response traffic.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return nil, os.NewSyscallError("setsockopt", err)
	}
	if d.passthrough {
		src := PassthroughAddr
		if dst.Addr().Is6() {
			src = dst.Addr()
		}
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
			return nil, os.NewSyscallError("bind", err)
		}
	}
	if err := unix.Connect(fd, sockaddr(dst)); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return nil, os.NewSyscallError("connect", err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		f.SetWriteDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var connErr error
	werr := rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			connErr = os.NewSyscallError("getsockopt", err)
		case v != 0:
			connErr = os.NewSyscallError("connect", syscall.Errno(v))
		default:
			if _, err := unix.Getpeername(int(fd)); errors.Is(err, unix.ENOTCONN) {
				return false // handshake still in progress: wait for writability
			}
		}
		return true
	})
	if werr != nil {
		if errors.Is(werr, os.ErrDeadlineExceeded) {
			// Only ctx sets our deadline; the poller can fire a hair before ctx's
			// own timer, so wait for it to report why.
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, werr
	}
	if connErr != nil {
		return nil, connErr
	}
	return net.FileConn(f)
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}
