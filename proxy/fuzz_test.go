package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
	"testing"
)

// Run bounded, e.g.:
//
//	go test ./proxy -run '^$' -fuzz '^FuzzClassify$' -fuzztime 60s
//	go test ./proxy -run '^$' -fuzz '^FuzzRequestHead$' -fuzztime 60s
//	go test ./proxy -run '^$' -fuzz '^FuzzResponseHead$' -fuzztime 60s
//	go test ./proxy -run '^$' -fuzz '^FuzzChunked$' -fuzztime 60s

// FuzzClassify checks the protocol detector: a decision made on a prefix never
// changes as more bytes arrive, and a decision is always a protocol.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n", h2Preface, "PRI * HTTP/1.1\r\n", "\x16\x03\x01\x02\x00\x01",
		"PROPFIND /dav HTTP/1.1\r\n", "SET key value\r\n", "*3\r\n$3\r\nSET\r\n", "get foo\r\n",
		"VERSION-CONTROL /x HTTP/1.0\r\n", "\x00\x00\x00\x08\x04\xd2\x16\x2f", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, more := classify(b)
		if !more && p == ProtocolUnknown {
			t.Fatalf("decided on unknown for %q", b)
		}
		for i := 0; i <= len(b); i++ {
			pp, m := classify(b[:i])
			if m {
				continue
			}
			if more || pp != p {
				t.Fatalf("prefix %q decided %v, whole %q decided %v (more=%v)", b[:i], pp, b, p, more)
			}
			break
		}
		if bytes.HasPrefix(b, []byte(h2Preface)) && p != ProtocolHTTP2 {
			t.Fatalf("preface classified as %v", p)
		}
	})
}

// FuzzRequestHead checks the request head parser: whatever it accepts is
// forwarded as a head that parses again to the same request, by this parser and
// by net/http, so two parsers downstream cannot disagree about it.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: X-A, close\r\nX-A: 1\r\n\r\n",
		"GET http://x/y HTTP/1.0\r\nUser-Agent: z\r\n\r\n",
		"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
		"\r\nGET / HTTP/1.1\nHost: x\nX: a\tb\n\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Bad : y\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := readHead(bufio.NewReaderSize(bytes.NewReader(data), 16), 4096, nil)
		if err != nil {
			return
		}
		var h head
		if h.parseRequest(string(raw)) != nil {
			return
		}
		fr, err := h.requestFraming()
		if err != nil {
			return
		}
		h.connection()
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		writeRequestHead(w, &h, fr, false, "dst:80")
		w.Flush()

		var again head
		raw2, err := readHead(bufio.NewReader(bytes.NewReader(out.Bytes())), 1<<20, nil)
		if err != nil {
			t.Fatalf("forwarded head unreadable: %v\n%q", err, out.Bytes())
		}
		if err := again.parseRequest(string(raw2)); err != nil {
			t.Fatalf("forwarded head unparsable: %v\n%q", err, out.Bytes())
		}
		fr2, err := again.requestFraming()
		if err != nil || fr2 != fr || again.method != h.method || again.target != h.target {
			t.Fatalf("forwarded head means something else: %v %+v %+v\n%q", err, fr, fr2, out.Bytes())
		}
		for _, f := range h.fields {
			switch k := f.key; {
			case f.drop:
				if again.count(k) != 0 {
					t.Fatalf("%s is listed in Connection, but forwarded: %q", k, out.Bytes())
				}
			case k == "Connection", k == "Proxy-Connection", k == "Keep-Alive", k == "Te", k == "Transfer-Encoding", k == "Content-Length", k == "Upgrade", k == "Http2-Settings":
			default:
				if vv, got := h.values(nil, k), again.values(nil, k); !slices.Equal(got, vv) {
					t.Fatalf("%s: %q became %q", k, vv, got)
				}
			}
		}

		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out.Bytes())))
		if err != nil {
			t.Fatalf("net/http rejects what we forward: %v\n%q", err, out.Bytes())
		}
		if req.Method != h.method || req.RequestURI != h.target {
			t.Fatalf("net/http reads %s %s", req.Method, req.RequestURI)
		}
		switch fr.kind {
		case bodyChunked:
			if len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked" {
				t.Fatalf("net/http sees codings %q", req.TransferEncoding)
			}
		case bodyLength:
			if req.ContentLength != fr.n {
				t.Fatalf("net/http sees length %d, we %d", req.ContentLength, fr.n)
			}
		default:
			if req.ContentLength != 0 {
				t.Fatalf("net/http sees length %d, we none", req.ContentLength)
			}
		}
	})
}

// FuzzResponseHead checks the response head parser the same way, against
// net/http's response reader.
func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, headReq bool) {
		raw, err := readHead(bufio.NewReaderSize(bytes.NewReader(data), 16), 4096, nil)
		if err != nil {
			return
		}
		var h head
		if h.parseResponse(string(raw)) != nil || h.status < 200 {
			return
		}
		method := http.MethodGet
		if headReq {
			method = http.MethodHead
		}
		in, err := h.responseFraming(method)
		if err != nil {
			return
		}
		h.connection()
		out := in
		if in.kind == bodyUntilClose {
			out.kind = bodyChunked
		}
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		writeResponseHead(w, &h, out, true, 1, method)
		w.Flush()
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf.Bytes())), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("net/http rejects what we forward: %v\n%q", err, buf.Bytes())
		}
		if resp.StatusCode != h.status {
			t.Fatalf("status %d became %d", h.status, resp.StatusCode)
		}
		if out.kind == bodyLength && !headReq && resp.ContentLength != out.n {
			t.Fatalf("length %d became %d\n%q", out.n, resp.ContentLength, buf.Bytes())
		}
	})
}

// FuzzChunked checks the chunked decoder: what it accepts re-encodes to a body
// both it and net/http decode to the same bytes and trailer, however the reads
// and readiness checks interleave.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n2 ; x\r\nde\r\n0\r\nX-Trailer: v\r\n\r\n",
		"000a\r\n0123456789\r\n0\r\n\r\n",
		"1\r\na\r\n",
		"fffffffffffffffff\r\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		body, trailer, err := decodeChunked(data, int(step)%17+1)
		if err != nil {
			return
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if len(body) > 0 {
			writeChunk(w, body)
		}
		writeLastChunk(w, trailer)
		w.Flush()
		body2, trailer2, err := decodeChunked(out.Bytes(), 7)
		if err != nil || !bytes.Equal(body, body2) || !bytes.Equal(trailer, trailer2) {
			t.Fatalf("re-encoding decodes differently: %v", err)
		}
		std, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(out.Bytes())))
		if err != nil || !bytes.Equal(std, body) {
			t.Fatalf("net/http decodes our encoding differently: %v", err)
		}
	})
}

// decodeChunked reads a whole chunked body in reads of step bytes, asking for
// readiness in between as the proxy does.
func decodeChunked(data []byte, step int) (body, trailer []byte, err error) {
	var cr chunkedReader
	cr.reset(bufio.NewReaderSize(bytes.NewReader(data), 16), 4096)
	buf := make([]byte, step)
	for {
		cr.ready()
		n, err := cr.Read(buf)
		body = append(body, buf[:n]...)
		if err == io.EOF {
			return body, append([]byte(nil), cr.trailer...), nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
}
