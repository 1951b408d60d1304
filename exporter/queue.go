package exporter

import (
	"sync"

	"github.com/hoptrace/hoptrace/spans"
)

// queue is a bounded ring of spans plus every counter of Stats. One mutex guards
// both, so a snapshot is consistent and the accounting invariant holds at every
// instant, not only eventually. Record's critical section is a few loads and
// stores: it never waits for the exporter, only for another Record or a batch
// hand-over, which are equally short.
type queue struct {
	mu     sync.Mutex
	buf    []*spans.Span
	head   int // index of the oldest span
	n      int // spans in buf
	closed bool
	stats  Stats

	batchSize int
	// wake tells the worker a full batch is waiting; capacity 1, sent without blocking.
	wake chan struct{}
}

func newQueue(capacity, batchSize int) *queue {
	return &queue{
		buf:       make([]*spans.Span, capacity),
		batchSize: batchSize,
		wake:      make(chan struct{}, 1),
	}
}

// push adds s, or counts it dropped when the queue is full or closed: dropping
// the newest span keeps the ones that have waited longest, whose batch is next.
func (q *queue) push(s *spans.Span) {
	q.mu.Lock()
	q.stats.Produced++
	var full, dropped bool
	switch {
	case q.closed:
		q.stats.Dropped.Shutdown++
		dropped = true
	case q.n == len(q.buf):
		q.stats.Dropped.QueueFull++
		dropped = true
	default:
		i := q.head + q.n
		if i >= len(q.buf) {
			i -= len(q.buf)
		}
		q.buf[i] = s
		q.n++
		full = q.n == q.batchSize
	}
	q.mu.Unlock()
	if dropped {
		spans.Release(s)
	}
	if full {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// take appends up to max of the oldest spans to dst and marks them in flight until
// settle. Only the worker calls take and settle, one batch at a time.
func (q *queue) take(dst []*spans.Span, max int) []*spans.Span {
	q.mu.Lock()
	n := min(q.n, max)
	for range n {
		dst = append(dst, q.buf[q.head])
		q.buf[q.head] = nil // the span's memory goes back to the collector once exported
		q.head++
		if q.head == len(q.buf) {
			q.head = 0
		}
	}
	q.n -= n
	q.stats.InFlight = n
	q.mu.Unlock()
	return dst
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// update changes counters under the lock, keeping the in-flight batch in flight.
func (q *queue) update(f func(*Stats)) {
	q.mu.Lock()
	f(&q.stats)
	q.mu.Unlock()
}

// settle records what became of the in-flight batch: exported spans and, for the
// rest, a drop reason applied by drop.
func (q *queue) settle(exported uint64, drop func(*Drops)) {
	q.mu.Lock()
	q.stats.Exported += exported
	if drop != nil {
		drop(&q.stats.Dropped)
	}
	q.stats.InFlight = 0
	q.mu.Unlock()
}

// close makes every later push a shutdown drop.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// discard drops every queued span for reason shutdown and returns how many.
func (q *queue) discard() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	for i := range n {
		spans.Release(q.buf[(q.head+i)%len(q.buf)])
	}
	clear(q.buf)
	q.head, q.n = 0, 0
	q.stats.Dropped.Shutdown += uint64(n)
	return n
}

func (q *queue) snapshot() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	s.Queued = q.n
	s.QueueCapacity = len(q.buf)
	return s
}
