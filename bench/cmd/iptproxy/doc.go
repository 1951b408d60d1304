// Command iptproxy is hoptrace's proxy package behind iptables REDIRECT rules,
// the way sidecar meshes capture traffic with an init container: `make bench`
// runs it to compare that capture with hoptrace's eBPF capture, everything else
// being equal.
//
// It opens an outbound listener (127.0.0.1:15001) in each --outbound network
// namespace and an inbound listener (0.0.0.0:15006) in each --inbound one, finds
// each connection's original destination with getsockopt(SO_ORIGINAL_DST), and
// dials upstream from inside the pod's namespace — the socket made on a thread
// switched into it, as the hoptrace agent does — with a socket mark that the
// rules let through. The rules themselves are the caller's (benchrun installs
// and removes them). It prints "ready" once every listener is open.
package main
