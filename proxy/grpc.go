package proxy

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// grpcUnavailable is the gRPC status code a client gets when its upstream cannot
// be reached: the code gRPC itself uses for connection failures, which clients
// treat as retryable.
const grpcUnavailable = 14

// isGRPC reports whether a content type is gRPC's (application/grpc, +proto, ...),
// but not gRPC-Web, which is plain HTTP to a proxy.
func isGRPC(contentType string) bool {
	rest, ok := strings.CutPrefix(contentType, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcMethod splits a gRPC path "/pkg.Service/Method".
func grpcMethod(path string) (service, method string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return "", "", false
	}
	service, method, ok = strings.Cut(rest, "/")
	if !ok || service == "" || method == "" || strings.Contains(method, "/") {
		return "", "", false
	}
	return service, method, true
}

// writeGRPCError answers a gRPC request with a trailers-only response: HTTP 200
// and the status in the (only) header block, which is how gRPC servers report a
// call that failed before producing anything.
func writeGRPCError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
	h.Set("Grpc-Message", url.PathEscape(msg))
	w.WriteHeader(http.StatusOK)
}
