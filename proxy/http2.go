package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// The terminating path: the fallback for HTTP/2 connections the relay
// (h2relay.go) cannot serve. It takes its stream limit and upstream health
// checks from the relay's constants, so a client sees the same limits either way.

func (p *Proxy) initH2() error {
	p.h2base = &http.Server{
		MaxHeaderBytes: p.cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.h2srv = &http2.Server{
		IdleTimeout:          p.cfg.IdleTimeout,
		MaxConcurrentStreams: h2MaxStreams,
	}
	// Registers the GOAWAY-on-shutdown hook that Shutdown triggers through
	// h2base.Shutdown, for terminated connections only.
	if err := http2.ConfigureServer(p.h2base, p.h2srv); err != nil {
		return fmt.Errorf("configure http/2 server: %w", err)
	}
	p.h2t = &http2.Transport{
		// Prior knowledge over cleartext: the client spoke h2c to this
		// destination, so the destination speaks it.
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
			return p.dial(ctx, addr)
		},
		DisableCompression: true, // bodies pass through as they are
		IdleConnTimeout:    p.cfg.IdleTimeout,
		ReadIdleTimeout:    h2ReadIdleTimeout,
		PingTimeout:        h2PingTimeout,
	}
	return nil
}

// serveH2Terminated serves an HTTP/2 connection by terminating it: every stream
// becomes a request of its own on the shared upstream transport. It serves the
// connections the relay cannot (see serveH2): their upstream could not be dialed,
// or did not answer in HTTP/2, and each stream gets a 503 or 502 (gRPC:
// UNAVAILABLE) for as long as that lasts. prefix holds what was read from c
// already, its preface first.
func (p *Proxy) serveH2Terminated(c net.Conn, prefix []byte, fl *flow, dst netip.AddrPort) {
	defer func() {
		if p.closing.Load() {
			// Upstream connections busy when Close ran are idle now.
			p.h2t.CloseIdleConnections()
		}
	}()
	h := &h2Handler{p: p, fl: fl, dst: dst, dstStr: dst.String()}
	p.h2srv.ServeConn(&prefixConn{Conn: c, prefix: prefix}, &http2.ServeConnOpts{
		BaseConfig: p.h2base,
		Handler:    h,
	})
}

// prefixConn replays bytes already read from a connection before reading more.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// h2Handler proxies the streams of one HTTP/2 client connection, each as its own
// request on the shared upstream transport.
type h2Handler struct {
	p      *Proxy
	fl     *flow
	dst    netip.AddrPort
	dstStr string
}

// h2Clock holds the times the transport reports from its own goroutines.
type h2Clock struct {
	headStart                             atomic.Int64 // first header field encoded: the head is going out
	wroteHeaders, wroteRequest, firstByte atomic.Int64
}

func stamp(t *atomic.Int64) { t.Store(time.Now().UnixNano()) }

func unstamp(t *atomic.Int64) time.Time {
	if n := t.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (h *h2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p := h.p
	grpc := isGRPC(r.Header.Get("Content-Type"))
	info := h.fl.request(ProtocolHTTP2, "2")
	info.Method, info.Host, info.UserAgent = r.Method, r.Host, r.Header.Get("User-Agent")
	info.Path, info.Query = r.URL.EscapedPath(), r.URL.RawQuery
	if grpc {
		info.Protocol = ProtocolGRPC
		h.fl.setProtocol(ProtocolGRPC)
	}
	deleteConnectionFields(r.Header) // HTTP/2 forbids them (RFC 9113 §8.2.2)
	l := new(legs)
	p.inferNotLinked(r.Header)
	p.tr.begin(l, info, r.Header, start)

	out := &http.Request{
		Method:        r.Method,
		URL:           &url.URL{Scheme: "http", Host: h.dstStr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        r.Header,
		Body:          r.Body,
		ContentLength: r.ContentLength,
		Host:          r.Host,
		Trailer:       r.Trailer,
	}
	if r.ContentLength == 0 {
		out.Body = nil // the stream ended with its headers: so will ours
	}
	ctx := r.Context()
	var clock *h2Clock
	if l.sampled {
		clock = new(h2Clock)
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteHeaderField:     func(string, []string) { clock.headStart.CompareAndSwap(0, time.Now().UnixNano()) },
			WroteHeaders:         func() { stamp(&clock.wroteHeaders) },
			WroteRequest:         func(httptrace.WroteRequestInfo) { stamp(&clock.wroteRequest) },
			GotFirstResponseByte: func() { stamp(&clock.firstByte) },
		})
	}
	l.dialStart = time.Now()
	resp, err := p.h2t.RoundTrip(out.WithContext(ctx))
	if clock != nil {
		// As for HTTP/1, the client leg starts as the head goes out, so that the
		// next proxy's span never starts before it.
		l.cliStart, l.firstByte = unstamp(&clock.headStart), unstamp(&clock.firstByte)
		if l.cliStart.IsZero() {
			l.cliStart = unstamp(&clock.wroteHeaders)
		}
	} else {
		// Unsampled requests skip the per-request trace hooks: the client leg
		// is timed from the round trip's start.
		l.cliStart = l.dialStart
		l.firstByte = time.Now()
	}
	if err != nil {
		h.failed(w, r, l, grpc, err)
		return
	}
	defer resp.Body.Close()
	l.response(resp.StatusCode, resp.Header)

	hdr := w.Header()
	for k, vv := range resp.Header {
		hdr[k] = vv
	}
	deleteConnectionFields(hdr)
	w.WriteHeader(resp.StatusCode)
	l.respHeader = time.Now()

	// gRPC messages and bodies of unknown length are streams: each piece goes
	// out as it arrives. A body of known length goes out as the server buffers it.
	stream := grpc || resp.ContentLength < 0
	rc := http.NewResponseController(w)
	buf := getCopyBuf()
	readErr, writeErr := copyH2Body(w, rc, resp.Body, *buf, stream)
	putCopyBuf(buf)
	if clock != nil {
		l.sent = unstamp(&clock.wroteRequest)
	}
	switch {
	case writeErr != nil:
		l.fail("client", writeErr)
	case readErr != nil:
		l.fail("upstream", readErr)
		if !grpc || len(resp.Trailer) > 0 {
			l.finish(time.Now(), h.fl)
			panic(http.ErrAbortHandler) // resets the stream: the client must not take a truncated body for a whole one
		}
		// A gRPC client gets a status it understands instead of a reset.
		hdr[http.TrailerPrefix+"Grpc-Status"] = []string{"14"}
		hdr[http.TrailerPrefix+"Grpc-Message"] = []string{url.PathEscape("upstream broke off: " + readErr.Error())}
		l.grpcStatus = grpcUnavailable
	default:
		l.cliEnd = time.Now()
		for k, vv := range resp.Trailer {
			hdr[http.TrailerPrefix+k] = vv
		}
		if grpc {
			l.grpcTrailer(resp.Trailer)
		}
		if l.sampled && len(resp.Trailer) > 0 && len(p.tr.capture) > 0 {
			l.resAttrs = p.tr.captureHeaders(l.resAttrs, resp.Trailer, false)
		}
	}
	l.finish(time.Now(), h.fl)
}

// copyH2Body copies a response body to an HTTP/2 response, flushing after every
// piece when stream is set.
func copyH2Body(w io.Writer, rc *http.ResponseController, body io.Reader, buf []byte, stream bool) (readErr, writeErr error) {
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if stream {
				if werr := rc.Flush(); werr != nil {
					return nil, werr
				}
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// failed answers a stream whose upstream request failed: 503 when nothing could
// be reached, else 502; gRPC clients get UNAVAILABLE in a trailers-only response.
func (h *h2Handler) failed(w http.ResponseWriter, r *http.Request, l *legs, grpc bool, err error) {
	defer l.finish(time.Now(), h.fl)
	if r.Context().Err() != nil {
		l.fail("client", err) // the client reset the stream: nobody to answer
		return
	}
	kind, status := "upstream", http.StatusBadGateway
	var de *dialError
	if errors.As(err, &de) {
		kind, status = "connect", http.StatusServiceUnavailable
	}
	l.fail(kind, err)
	h.p.log.Debug("request failed", "dst", h.dstStr, "err", err)
	if grpc {
		writeGRPCError(w, grpcUnavailable, "hoptrace: upstream unavailable: "+err.Error())
		l.status, l.grpcStatus = http.StatusOK, grpcUnavailable
		return
	}
	http.Error(w, http.StatusText(status)+": "+err.Error(), status)
	l.status = status
}
