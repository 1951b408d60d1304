// Package redirect steers a pod's TCP traffic into hoptrace's proxy with eBPF, and
// gives the proxy what it needs to serve it: the pod's two listeners, the original
// destination of each accepted connection, and dialers that dial from inside the pod.
//
// Programs and maps are loaded once per node and pinned under a bpffs directory;
// per pod only links are made (cgroup/connect4, cgroup/connect6, sockops and, where
// the kernel has them, cgroup/getpeername4/6 and getsockname4/6 on the pod's
// cgroup v2 directory; sk_lookup on its netns) and a few map entries are written. A restarted agent adopts what is pinned. Every path fails open: without
// the agent's listeners, connections go where the app sent them.
package redirect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/hoptrace/hoptrace/bpf"
)

// DefaultPinDir is where the agent pins its BPF objects.
const DefaultPinDir = "/sys/fs/bpf/hoptrace"

// Default listener ports inside each pod's netns, as in Istio (15001 out, 15006 in).
// Apps must not listen on them.
const (
	DefaultOutboundPort = 15001
	DefaultInboundPort  = 15006
)

// PassthroughAddr is the source address of the proxy's dials to the local app; the
// sk_lookup program lets connections from it through uncaptured.
var PassthroughAddr = netip.MustParseAddr("127.0.0.6")

var (
	// ErrNetnsGone means the pod's network namespace does not exist (any more).
	ErrNetnsGone = errors.New("network namespace not found")
	// ErrNotNetns means a pod's netns path names something else (a file, another
	// kind of namespace).
	ErrNotNetns = errors.New("not a network namespace")
	// ErrNotAttached means Detach was asked for a pod that is not attached or pinned.
	ErrNotAttached = errors.New("pod not attached")
	// ErrAlreadyAttached means Attach was called twice for one pod ID.
	ErrAlreadyAttached = errors.New("pod already attached")
	// ErrNoOriginalDst means no original destination is recorded for a connection.
	ErrNoOriginalDst = errors.New("no original destination recorded")
	// ErrClosed means the Redirector was closed.
	ErrClosed = errors.New("redirector closed")
	// ErrInvalidPod means a Pod description is incomplete or malformed.
	ErrInvalidPod = errors.New("invalid pod")
)

// Config configures a Redirector. The zero value uses the defaults.
type Config struct {
	// PinDir is the bpffs directory for pins (DefaultPinDir when empty). If no bpffs
	// is mounted at or above it, Open mounts one at /sys/fs/bpf when PinDir is under it.
	PinDir       string
	OutboundPort uint16 // DefaultOutboundPort when 0
	InboundPort  uint16 // DefaultInboundPort when 0

	// AllEvents reports every capture decision as an Event. Without it only
	// bypasses are events, and connections captured as intended are counted
	// (Counters): an event costs a ring-buffer record and a wake-up of the
	// reader per connection, which at thousands of new connections per second
	// is more CPU than the capture itself.
	AllEvents bool

	// FastPath moves the bytes an app sends to the agent on an in-pod loopback
	// leg straight to the agent's socket with sk_msg, skipping the loopback TCP
	// stack (docs/redirect.md, "Fast path"). If it cannot be loaded, capture
	// works without it and Redirector.FastPath says why.
	FastPath bool

	// withoutTransparency loads no getpeername/getsockname programs, as on a
	// kernel without their hooks; for tests of that fallback.
	withoutTransparency bool
	// breakFastPath makes the fast path's programs fail to load, as a kernel
	// that refuses them would; for tests of that fallback.
	breakFastPath bool
	// origRingSize, when set, sizes orig_ring (bytes, a power of two of at
	// least a page) instead of the program's 256 KiB: a small one fills, for
	// tests of orig_by_port taking over.
	origRingSize uint32
}

// Counters are the BPF programs' running totals, summed over CPUs.
type Counters struct {
	Redirected uint64 // outbound connections sent to the proxy
	Captured   uint64 // inbound connections assigned to the proxy
	EventsLost uint64 // events dropped because the ring buffer was full
	// OrigFromMap counts original destinations the proxies found in
	// orig_by_port because orig_ring was full (the agent fell behind
	// accepting); OrigUnclaimed records of connections the agent never
	// accepted (the pod's listener closed first), dropped. Both are the
	// agent's own counts, not the kernel's.
	OrigFromMap   uint64
	OrigUnclaimed uint64
}

func (c Config) withDefaults() Config {
	if c.PinDir == "" {
		c.PinDir = DefaultPinDir
	}
	if c.OutboundPort == 0 {
		c.OutboundPort = DefaultOutboundPort
	}
	if c.InboundPort == 0 {
		c.InboundPort = DefaultInboundPort
	}
	return c
}

// Pod is what Attach needs to know about a pod.
type Pod struct {
	// ID names the pod for pins and events, e.g. its UID or "namespace/name". It
	// must be stable across agent restarts so that a new agent adopts the pins.
	ID        string
	CgroupDir string // the pod's cgroup v2 directory
	NetnsPath string // e.g. /proc/<pid>/ns/net or /run/netns/<name>

	// InboundPorts limits inbound capture to these ports; nil captures every port.
	InboundPorts      []uint16
	SkipInboundPorts  []uint16
	SkipOutboundPorts []uint16
	SkipOutboundCIDRs []netip.Prefix
}

func (p Pod) validate() error {
	switch {
	case p.ID == "":
		return fmt.Errorf("%w: empty ID", ErrInvalidPod)
	case len(p.ID) > maxPodIDLen:
		return fmt.Errorf("%w: ID %q longer than %d bytes", ErrInvalidPod, p.ID, maxPodIDLen)
	case p.CgroupDir == "":
		return fmt.Errorf("%w %s: empty cgroup dir", ErrInvalidPod, p.ID)
	case p.NetnsPath == "":
		return fmt.Errorf("%w %s: empty netns path", ErrInvalidPod, p.ID)
	}
	return nil
}

const maxPodIDLen = 127 // pod_id.id in redirect.c, NUL-terminated

// Resolver finds where an accepted connection was originally going.
type Resolver interface {
	OriginalDst(c net.Conn) (netip.AddrPort, error)
}

// Dialer dials from inside a pod's network namespace.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Direction of a redirect event. Its values, like Reason's, are the programs'
// enums, generated from redirect.c into package bpf.
type Direction uint8

const (
	Outbound = Direction(bpf.RedirectDirectionDIR_OUTBOUND)
	Inbound  = Direction(bpf.RedirectDirectionDIR_INBOUND)
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return "unknown"
}

// Reason says why a connection was redirected or bypassed (enum reason in redirect.c).
type Reason uint8

const (
	ReasonRedirected         = Reason(bpf.RedirectReasonREASON_REDIRECTED)
	ReasonNoListener         = Reason(bpf.RedirectReasonREASON_NO_LISTENER)
	ReasonExcludedPort       = Reason(bpf.RedirectReasonREASON_EXCLUDED_PORT)
	ReasonExcludedCIDR       = Reason(bpf.RedirectReasonREASON_EXCLUDED_CIDR)
	ReasonInboundCaptured    = Reason(bpf.RedirectReasonREASON_INBOUND_CAPTURED)
	ReasonInboundSkipped     = Reason(bpf.RedirectReasonREASON_INBOUND_SKIPPED)
	ReasonInboundNoListener  = Reason(bpf.RedirectReasonREASON_INBOUND_NO_LISTENER)
	ReasonInboundAssignError = Reason(bpf.RedirectReasonREASON_INBOUND_ASSIGN_FAILED)
)

var reasonNames = map[Reason]string{
	ReasonRedirected:         "redirected",
	ReasonNoListener:         "no-listener",
	ReasonExcludedPort:       "excluded-port",
	ReasonExcludedCIDR:       "excluded-cidr",
	ReasonInboundCaptured:    "captured",
	ReasonInboundSkipped:     "port-not-captured",
	ReasonInboundNoListener:  "no-listener",
	ReasonInboundAssignError: "assign-failed",
}

func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason-%d", uint8(r))
}

// Redirected reports whether the connection was steered into the proxy.
func (r Reason) Redirected() bool { return r == ReasonRedirected || r == ReasonInboundCaptured }

// Event is one redirect decision, read from the kernel's ring buffer.
type Event struct {
	Time         time.Time
	PodID        string // "" if the pod is unknown to this process
	NetnsCookie  uint64
	SocketCookie uint64 // outbound only
	PID          uint32 // outbound only: the connecting process
	Comm         string // outbound only
	Direction    Direction
	Reason       Reason
	Dst          netip.AddrPort // the original destination
	Src          netip.AddrPort // inbound only
}
