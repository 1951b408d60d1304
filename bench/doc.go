// Package bench is what `make bench` shares between its programs: the record of
// one measured run (results.runs.json) and of its medians over the rounds
// (results.json), fortio's JSON output, and the CPU and memory of the processes
// under test.
//
// The programs live under cmd/: benchrun drives the whole matrix on a node in a
// box, otlpsink is the OTLP receiver spans are exported to, iptproxy is the
// hoptrace proxy behind iptables REDIRECT rules, and benchreport turns
// results.json into the table in docs/benchmarks.md.
package bench
