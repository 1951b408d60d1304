// Command otlpsink is the OTLP/gRPC receiver of `make bench`: it accepts trace
// exports, counts their spans and throws them away, so the benchmark measures
// the exporters and not a backend.
//
// It listens on loopback in its own network namespace (port chosen by the
// kernel, for the hoptrace agent) and on a fixed address inside each --netns
// (for proxies that run in a pod, like Caddy), and serves the counts as JSON on
// a loopback HTTP address. When everything listens it prints one line:
//
//	ready otlp=127.0.0.1:41234 stats=127.0.0.1:41235
package main
