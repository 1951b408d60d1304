// Package exporter ships hoptrace's span records to an OpenTelemetry backend over
// OTLP (gRPC or HTTP/protobuf).
//
// The proxy calls Record on its data path, so Record never blocks and never
// allocates: spans go into a bounded queue, and when that is full the newest spans
// are dropped and counted. One worker goroutine takes batches from the queue,
// encodes them as an OTLP ExportTraceServiceRequest with ResourceSpans grouped by
// resource (one per pod, by *spans.Resource pointer identity) and exports them
// with the OTLP specification's retry rules: retryable gRPC codes and HTTP
// statuses, server-supplied delays (Retry-After, RetryInfo), exponential backoff
// with jitter bounded by a maximum elapsed time, and partial success.
//
// The batch is written straight to protobuf wire format into a pooled buffer
// (encode.go), in one pass, rather than built as go.opentelemetry.io/proto/otlp
// messages and marshalled: that is about ten times cheaper per span and
// allocation-free, and keeps the OTLP message types (and grpc-gateway, which they
// pull in) out of the agent. Tests hold the encoding to a reference built from
// those messages, and a real Jaeger decodes what the exporter sends. Encoding
// each span in Record instead, on the proxy's goroutine, was tried and measured
// dearer in the traced agent (0.9 against 0.67 µs per span): the worker's loop
// over a whole batch keeps the encoder's code and branches warm. The proxy's
// spans come deferred (spans.Builder): the worker builds each into one
// scratch span of its own just before encoding it, so that a request's
// attributes are written and read on one CPU, not written by the proxy on
// one and read by the worker on the other.
//
// OTLP/gRPC is one unary call, made over HTTP/2 by h2Caller (h2call.go) on the
// worker's goroutine: no read loop, no goroutine per call, the request's frames
// written in one system call as far as flow control allows. OTLP/HTTP uses
// net/http.
//
// Every span handed to Record ends in exactly one of Stats' buckets: exported, or
// dropped for one reason. Once Shutdown returns, Produced == Exported + Dropped.Total().
//
// Configuration follows the OpenTelemetry SDK environment variables
// (OTEL_EXPORTER_OTLP_*, their OTEL_EXPORTER_OTLP_TRACES_* overrides and
// OTEL_BSP_*), see ConfigFromEnv; BindFlags lets command-line flags override them.
package exporter
