package connid

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/bpf"
	"github.com/hoptrace/hoptrace/netns"
)

// Table is the record of the connections of one cgroup's sockets. Nothing is
// pinned: it goes with the process that opened it.
type Table struct {
	objs bpf.ConnidObjects
	link link.Link
}

// Open loads the program and attaches it to the cgroup v2 directory cgroupDir,
// which should be the agent's own (cgroup2.Self): every TCP socket created by
// a process there is recorded, except those in this process's own network
// namespace (the agent's in the node's: its admin API, its exporter).
func Open(cgroupDir string) (*Table, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	own, err := ownNetnsCookie()
	if err != nil {
		return nil, err
	}
	spec, err := bpf.LoadConnid()
	if err != nil {
		return nil, fmt.Errorf("parse embedded connection identity program: %w", err)
	}
	if err := spec.Variables["own_netns_cookie"].Set(own); err != nil {
		return nil, fmt.Errorf("connection identity program: %w", err)
	}
	t := new(Table)
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("load connection identity program: %w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("load connection identity program: %w", err)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupDir, Attach: ebpf.AttachCGroupSockOps, Program: t.objs.HoptraceConnid})
	if err != nil {
		t.objs.Close()
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("attach to %s: %w: %w", cgroupDir, ErrNotSupported, err)
		}
		return nil, fmt.Errorf("attach to %s: %w", cgroupDir, err)
	}
	t.link = l
	return t, nil
}

// ownNetnsCookie is the cookie of this process's network namespace, the one
// the program leaves out.
func ownNetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("own netns cookie: %w", err)
	}
	defer unix.Close(fd)
	v, err := netns.SocketCookie(fd)
	if err != nil {
		return 0, fmt.Errorf("own netns cookie: %w: %w", ErrNotSupported, err)
	}
	return v, nil
}

// Close detaches and unloads the program.
func (t *Table) Close() error {
	return errors.Join(t.link.Close(), t.objs.Close())
}

// Identify returns the identity of c's connection and which of its ends are
// the cgroup's sockets. ok is false when c is no TCP socket, or one the
// program did not record (made before Open, or by another cgroup).
func (t *Table) Identify(c net.Conn) (id ID, ours Ends, ok bool) {
	sc, isSock := c.(syscall.Conn)
	if !isSock {
		return ID{}, Ends{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return ID{}, Ends{}, false
	}
	var key bpf.ConnidConnId
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		// Socket storage is looked up by the socket's descriptor.
		lerr = t.objs.ConnidSocks.Lookup(uint32(fd), &key)
	}); err != nil || lerr != nil {
		return ID{}, Ends{}, false
	}
	var ends bpf.ConnidConnEnds
	if err := t.objs.ConnidConns.Lookup(&key, &ends); err != nil {
		return ID{}, Ends{}, false
	}
	return ID{Client: key.Client, Server: key.Server}, Ends{Client: ends.Client != 0, Server: ends.Server != 0}, true
}
