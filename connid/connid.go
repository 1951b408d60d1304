// Package connid names TCP connections alike from both their ends, whatever
// NAT did to their addresses, for the agent's own sockets.
//
// The local hand-off (proxy.Handoff) pairs the outbound proxy's dial with the
// inbound proxy's accept of the same connection. Through a Service's virtual
// IP the two four-tuples differ (kube-proxy rewrites the destination); the
// sequence numbers the two SYNs took do not. A sockops program (bpf/connid.c)
// attached to the agent's own cgroup records them for every socket of the
// agent when it becomes established, and which ends of each connection are
// the agent's; Table reads them back for a net.Conn.
package connid

import "errors"

// ErrNotSupported wraps why the table cannot run here (no cgroup v2, or a
// kernel without sockops or socket storage). Nothing else depends on it: hops
// through Services then go over TCP.
var ErrNotSupported = errors.New("connection identity not supported")

// ID names a connection: its client's and its server's initial sequence
// numbers, each plus one.
type ID struct{ Client, Server uint32 }

// Ends says which ends of a connection are sockets of the table's cgroup.
type Ends struct{ Client, Server bool }
