// Command benchrun is `make bench`: on a node in a box (two simulated pods on a
// private bridge) a fortio client pod calls a fortio server pod through each
// setup in turn — direct, the hoptrace agent at 100% and 0% sampling, the
// hoptrace proxy behind iptables REDIRECT, two chained nginx and two chained
// Caddy with tracing — over a fixed matrix of load scenarios. The matrix runs
// -rounds times, each round every setup in the same order on fresh pods, so
// the machine's drift falls on all setups alike. It writes every run (with its
// round) to results.runs.json, the per-field median over the rounds of each
// (scenario, setup) with its spread to results.json, and the machine, versions
// and each round's load average to results.meta.json. It needs root: it
// creates network namespaces and cgroups, loads BPF and installs iptables
// rules (inside the pods' namespaces only).
package main
