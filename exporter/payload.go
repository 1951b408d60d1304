package exporter

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/mem"
)

// payload is one encoded export request. The exporter holds a reference for the
// batch's lifetime (all its attempts); each gRPC attempt takes another one that
// gRPC frees once the bytes are written or the stream is gone. The memory goes
// back to the pool only when the last reader is done, so a late write of an
// abandoned attempt can never read the next batch.
type payload struct {
	buf mem.Buffer
}

// encodePayload encodes the batch prepared in enc into a pooled buffer.
func encodePayload(enc *encoder, size int) *payload {
	bp := payloadPool.Get(size)
	b := enc.appendRequest((*bp)[:0])
	if len(b) != size {
		// The sizing and append passes disagree: a bug that would send garbage.
		panic(fmt.Sprintf("exporter: encoded %d bytes, sized %d", len(b), size))
	}
	*bp = b
	enc.release()
	return &payload{buf: mem.NewBuffer(bp, payloadPool)}
}

func (p *payload) bytes() []byte { return p.buf.ReadOnlyData() }
func (p *payload) free()         { p.buf.Free() }

// payloadPool recycles request buffers: batches have similar sizes, so a buffer
// that fit one usually fits the next.
var payloadPool mem.BufferPool = &bufferPool{}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get(n int) *[]byte {
	if bp, ok := p.pool.Get().(*[]byte); ok && cap(*bp) >= n {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, n+n/4)
	return &b
}

func (p *bufferPool) Put(bp *[]byte) { p.pool.Put(bp) }
