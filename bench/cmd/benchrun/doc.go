// Command benchrun is `make bench`: on a node in a box (two simulated pods on a
// private bridge) a fortio client pod calls a fortio server pod through each
// setup in turn — direct, the hoptrace agent at 100% and 0% sampling, the
// hoptrace proxy behind iptables REDIRECT, two chained nginx and two chained
// Caddy with tracing — over a fixed matrix of load scenarios, and writes one
// record per run to results.json plus the machine and versions to
// results.meta.json. It needs root: it creates network namespaces and cgroups,
// loads BPF and installs iptables rules (inside the pods' namespaces only).
package main
