package exporter

import (
	"sync"
	"sync/atomic"
)

// payload is one encoded export request. The exporter holds a reference for the
// batch's lifetime (all its attempts); an attempt whose transport may read the
// bytes after the attempt returns takes another (ref) and frees it once the
// transport is done. The memory goes back to the pool only when the last
// reader is done, so a late write of an abandoned attempt can never read the
// next batch; a reference never freed leaves the buffer to the collector.
type payload struct {
	bp   *[]byte
	refs atomic.Int32
}

// encodePayload encodes batch with enc into a pooled buffer. The payload keeps
// no reference to the records.
func encodePayload(enc *encoder, batch []record) *payload {
	bp := payloadPool.Get(enc.sizeHint(len(batch)))
	*bp = enc.encode((*bp)[:0], batch)
	enc.release()
	p := &payload{bp: bp}
	p.refs.Store(1)
	return p
}

func (p *payload) bytes() []byte { return *p.bp }

func (p *payload) ref() { p.refs.Add(1) }

func (p *payload) free() {
	if p.refs.Add(-1) == 0 {
		payloadPool.Put(p.bp)
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
