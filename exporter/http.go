package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxResponseBody bounds what we read of a collector's response: enough for a
// status message, not a memory hazard if something else answers.
const maxResponseBody = 64 << 10

type httpSender struct {
	url     string
	client  *http.Client
	headers http.Header
	gz      *gzipper // nil: no compression
}

func newHTTPSender(cfg Config, t target) (*httpSender, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// DefaultTransport's dialer, with raw writes (TLS goes over them too).
	tr.DialContext = rawDialer(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	if t.tls {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	tr.MaxIdleConnsPerHost = 2
	h := make(http.Header, len(cfg.Headers)+2)
	for k, v := range cfg.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("User-Agent", userAgent)
	s := &httpSender{url: t.httpURL, client: &http.Client{Transport: tr}, headers: h}
	if cfg.Compression == CompressionGzip {
		h.Set("Content-Encoding", "gzip")
		s.gz = newGzipper()
	}
	return s, nil
}

func (s *httpSender) send(ctx context.Context, p *payload) (partialSuccess, error) {
	body := p.bytes()
	if s.gz != nil {
		var err error
		if body, err = s.gz.compress(body); err != nil {
			return partialSuccess{}, err
		}
	}
	rb := newRequestBody(body)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, rb)
	if err != nil {
		rb.Close()
		return partialSuccess{}, fmt.Errorf("otlp http request: %w", err)
	}
	hr.ContentLength = int64(len(body))
	hr.Header = s.headers.Clone()
	// The transport may still be writing the body after Do returns (a server can
	// answer early); the payload and gzip buffer are reused, so wait for it to let
	// go. It always closes the body, at the latest when ctx ends the request.
	defer rb.wait()
	resp, err := s.client.Do(hr)
	if err != nil {
		// Connection refused, reset, timeout: the collector may be back soon.
		return partialSuccess{}, &exportError{err: fmt.Errorf("otlp http export: %w", err), retryable: true}
	}
	defer resp.Body.Close()
	respBody, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody)) // keep the connection reusable
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		ps, err := decodeExportResponse(respBody)
		if readErr != nil || err != nil {
			// Accepted; a body we cannot read only loses the partial-success detail.
			return partialSuccess{}, nil
		}
		return ps, nil
	}
	return partialSuccess{}, httpError(resp, respBody, time.Now())
}

// requestBody is a request body that reports when the transport closed it.
type requestBody struct {
	*bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func newRequestBody(b []byte) *requestBody {
	return &requestBody{Reader: bytes.NewReader(b), closed: make(chan struct{})}
}

func (r *requestBody) Close() error {
	r.once.Do(func() { close(r.closed) })
	return nil
}

func (r *requestBody) wait() { <-r.closed }

// gzipper compresses request bodies into a buffer reused across batches: a
// sender's send is only called by the exporter's worker, one at a time, and
// the transport is done with the last body before the next is compressed.
type gzipper struct {
	buf bytes.Buffer
	zw  *gzip.Writer
}

func newGzipper() *gzipper {
	g := &gzipper{}
	g.zw = gzip.NewWriter(&g.buf)
	return g
}

func (g *gzipper) compress(b []byte) ([]byte, error) {
	g.buf.Reset()
	g.zw.Reset(&g.buf)
	if _, err := g.zw.Write(b); err != nil {
		return nil, fmt.Errorf("gzip export request: %w", err)
	}
	if err := g.zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip export request: %w", err)
	}
	return g.buf.Bytes(), nil
}

func (s *httpSender) close() error {
	s.client.CloseIdleConnections()
	return nil
}

// httpError classifies a non-2xx response as the OTLP/HTTP spec says: 429, 502, 503
// and 504 are retryable, honouring Retry-After; anything else is final.
func httpError(resp *http.Response, body []byte, now time.Time) error {
	msg := ""
	if m := decodeStatusMessage(body); m != "" {
		msg = ": " + m
	}
	xe := &exportError{err: fmt.Errorf("otlp http export: %s%s", resp.Status, msg)}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		xe.retryable = true
		xe.throttle = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return xe
}
