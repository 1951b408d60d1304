package proxy

import (
	"bufio"
	"io"
	"sync"
)

// Buffers are pooled: every connection needs a reader and a writer, every body
// copy a chunk buffer, and a busy node has thousands of connections.
const (
	connBufSize = 4 << 10
	copyBufSize = 32 << 10
)

var (
	readerPool  sync.Pool
	writerPool  sync.Pool
	copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
)

func getReader(r io.Reader) *bufio.Reader {
	if br, ok := readerPool.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, connBufSize)
}

func putReader(br *bufio.Reader) {
	if br == nil {
		return
	}
	br.Reset(nil)
	readerPool.Put(br)
}

func getWriter(w io.Writer) *bufio.Writer {
	if bw, ok := writerPool.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, connBufSize)
}

func putWriter(bw *bufio.Writer) {
	if bw == nil {
		return
	}
	bw.Reset(nil)
	writerPool.Put(bw)
}

func getCopyBuf() *[]byte  { return copyBufPool.Get().(*[]byte) }
func putCopyBuf(b *[]byte) { copyBufPool.Put(b) }
