package proxy

import (
	"bufio"
	"net/http"
	"strconv"

	"github.com/hoptrace/hoptrace/spans"
)

// writeRequestHead writes the head sent upstream: always HTTP/1.1 (so upstream
// connections are kept alive even for HTTP/1.0 clients), the received fields minus
// hop-by-hop ones, trace headers, and framing the proxy itself vouches for.
func writeRequestHead(w *bufio.Writer, req *head, body framing, upgrade bool, dst string) {
	w.WriteString(req.method)
	w.WriteByte(' ')
	w.WriteString(req.target)
	w.WriteString(" HTTP/1.1\r\n")
	writeFields(w, req, upgrade, true)
	// Trace headers as the legs left them, never as received. Most often
	// that is a traceparent alone, which TraceHeaders lists first: the loop
	// stops once it wrote as many keys as head.legs holds.
	left := len(req.legs.h)
	for _, k := range spans.TraceHeaders() {
		if left == 0 {
			break
		}
		if vv, ok := req.legs.h[k]; ok {
			left--
			for _, v := range vv {
				writeField(w, k, v)
			}
		}
	}
	if req.count("Host") == 0 { // HTTP/1.0
		writeField(w, "Host", dst)
	}
	switch body.kind {
	case bodyLength:
		writeField(w, "Content-Length", itoa64(body.n))
	case bodyChunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if upgrade {
		w.WriteString("Connection: Upgrade\r\n")
	}
	w.WriteString("\r\n")
}

// writeResponseHead writes the head sent to the client, framed as out.
func writeResponseHead(w *bufio.Writer, res *head, out framing, keep bool, clientMinor int, method string) {
	writeStatusLine(w, res.status, res.reason)
	writeFields(w, res, false, false)
	switch out.kind {
	case bodyLength:
		writeField(w, "Content-Length", itoa64(out.n))
	case bodyChunked:
		w.WriteString("Transfer-Encoding: chunked\r\n")
	case bodyNone:
		// A HEAD or 304 response's length describes the body it does not have.
		if method == http.MethodHead || res.status == http.StatusNotModified {
			var buf [1]string
			if n, ok := parseContentLength(res.values(buf[:0], "Content-Length")); ok {
				writeField(w, "Content-Length", itoa64(n))
			}
		}
	}
	switch {
	case !keep:
		w.WriteString("Connection: close\r\n")
	case clientMinor == 0:
		w.WriteString("Connection: keep-alive\r\n")
	}
	w.WriteString("\r\n")
}

// writeTunnelHead writes a 101 response with its Upgrade, or a 2xx response to
// CONNECT, which has no framing at all (RFC 9110 §9.3.6).
func writeTunnelHead(w *bufio.Writer, res *head, connect bool) {
	writeStatusLine(w, res.status, res.reason)
	writeFields(w, res, !connect, false)
	if !connect {
		w.WriteString("Connection: Upgrade\r\n")
	}
	w.WriteString("\r\n")
}

// writeFields re-emits a head's received lines, except hop-by-hop and framing
// fields and those Connection lists. For requests, trace fields are skipped
// too (they are written from head.legs), and the sampling override once the
// tracing took it out of head.legs.
func writeFields(w *bufio.Writer, h *head, keepUpgrade, request bool) {
	for _, f := range h.fields {
		switch {
		case f.drop:
			continue
		case f.key == "Upgrade":
			if !keepUpgrade {
				continue
			}
		case isConnectionField(f.key):
			continue
		case f.key == "Te", f.key == "Content-Length", f.key == "Http2-Settings":
			// Hop-by-hop too (RFC 9110 §7.6.1, RFC 7540 §3.2.1); the framing is
			// the proxy's own.
			continue
		case request && spans.IsTraceHeader(f.key):
			continue
		case request && f.key == spans.OverrideHeader:
			if _, ok := h.legs.h[f.key]; !ok {
				continue
			}
		}
		w.WriteString(f.line)
		w.WriteString("\r\n")
	}
}

func writeField(w *bufio.Writer, k, v string) {
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(v)
	w.WriteString("\r\n")
}

func writeStatusLine(w *bufio.Writer, status int, reason string) {
	w.WriteString("HTTP/1.1 ")
	w.WriteByte(byte('0' + status/100%10))
	w.WriteByte(byte('0' + status/10%10))
	w.WriteByte(byte('0' + status%10))
	w.WriteByte(' ')
	w.WriteString(reason)
	w.WriteString("\r\n")
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
