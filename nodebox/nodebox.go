// Package nodebox builds a node in a box: a private bridge and simulated pods
// (a network namespace, a veth on that bridge and a cgroup v2 directory each), for
// tests and for `make demo`.
//
// Nothing touches the host's own network: the bridge lives in a namespace of its
// own, pods get addresses from a private subnet and a route to that bridge only (no
// default route, no NAT), so no packet of theirs can leave the machine.
package nodebox

import (
	"errors"
	"net/netip"
)

// ErrPodExists means a pod of that name is already in the node.
var ErrPodExists = errors.New("pod already exists")

// Pod is one simulated pod.
type Pod struct {
	Name      string
	NetnsName string // name under /run/netns
	NetnsPath string // /run/netns/<NetnsName>
	CgroupDir string // its cgroup v2 directory
	IPv4      netip.Addr
	IPv6      netip.Addr

	node *Node
}
