package exporter

import (
	"sync"

	"github.com/hoptrace/hoptrace/spans"
)

// payload is one encoded export request, in a pooled buffer that goes back
// once the batch is settled (all its attempts). Both transports are done with
// the bytes when send returns: gRPC writes them itself (h2Caller), and the
// OTLP/HTTP sender waits for its transport to close the body (requestBody).
type payload struct {
	bp *[]byte
}

// encodePayload encodes batch with enc into a pooled buffer. The payload keeps
// no reference to the spans.
func encodePayload(enc *encoder, batch []*spans.Span) *payload {
	bp := payloadPool.Get(enc.sizeHint(len(batch)))
	*bp = enc.encode((*bp)[:0], batch)
	enc.release()
	return &payload{bp: bp}
}

func (p *payload) bytes() []byte { return *p.bp }

func (p *payload) free() {
	if p.bp != nil {
		payloadPool.Put(p.bp)
		p.bp = nil
	}
}

// payloadPool recycles request buffers: batches have similar sizes, so a buffer
// that fit one usually fits the next.
var payloadPool = &bufferPool{}

type bufferPool struct{ pool sync.Pool }

// oversized is when a pooled buffer is not worth its memory for a request of n
// bytes: one burst of large spans must not pin a large buffer for good.
func oversized(capacity, n int) bool { return capacity > 1<<20 && capacity > 4*n }

func (p *bufferPool) Get(n int) *[]byte {
	if bp, ok := p.pool.Get().(*[]byte); ok && cap(*bp) >= n && !oversized(cap(*bp), n) {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, n+n/4)
	return &b
}

func (p *bufferPool) Put(bp *[]byte) { p.pool.Put(bp) }
