package agent

import (
	"net/netip"
	"sync/atomic"
)

// samplingTrust decides whose sampling headers count: a peer inside the mesh
// (a pod this agent captures, or an address in the mesh networks: other nodes'
// pods) may decide and force traces; anyone else's headers are ignored, since
// anyone could have written them. Lookups are lock-free: the proxies ask once
// per inbound connection, the agent changes the pod set rarely.
type samplingTrust struct {
	everyone bool           // --trust-external-sampling
	networks []netip.Prefix // --mesh-networks
	pods     atomic.Pointer[map[netip.Addr]struct{}]
}

func newSamplingTrust(everyone bool, networks []netip.Prefix) *samplingTrust {
	return &samplingTrust{everyone: everyone, networks: networks}
}

// setPods replaces the captured pods' addresses.
func (t *samplingTrust) setPods(addrs []netip.Addr) {
	m := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		m[a.Unmap()] = struct{}{}
	}
	t.pods.Store(&m)
}

// trusted reports whether peer is inside the mesh. Loopback is: an inbound
// listener lives in the pod's netns, so a loopback client is the pod itself.
func (t *samplingTrust) trusted(peer netip.Addr) bool {
	peer = peer.Unmap()
	if t.everyone || peer.IsLoopback() {
		return true
	}
	if !peer.IsValid() {
		return false
	}
	if m := t.pods.Load(); m != nil {
		if _, ok := (*m)[peer]; ok {
			return true
		}
	}
	for _, n := range t.networks {
		if n.Contains(peer) {
			return true
		}
	}
	return false
}
