package exporter

import (
	"errors"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// queueFullLogEvery rate-limits the warning about spans dropped on a full queue:
// during an outage it would otherwise repeat for every batch.
const queueFullLogEvery = 10 * time.Second

// run is the exporter's single worker: one batch in flight at a time, so a slow
// or absent collector fills the queue (and drops) instead of growing memory.
func (e *Exporter) run() {
	defer close(e.done)
	timer := time.NewTimer(e.cfg.BatchTimeout)
	defer timer.Stop()
	for {
		select {
		case <-e.q.wake:
			e.exportFullBatches()
		case <-timer.C:
			e.exportQueued(e.q.len())
			timer.Reset(e.cfg.BatchTimeout)
		case reply := <-e.flushc:
			e.exportQueued(e.q.len())
			close(reply)
		case <-e.closing:
			e.exportQueued(e.q.len())
			if n := e.q.discard(); n > 0 {
				e.q.update(func(s *Stats) { s.FailedBatches++ })
				e.log.Warn("spans dropped at shutdown", "spans", n)
			}
			e.logDrops(true)
			return
		}
	}
}

// exportFullBatches exports while a whole batch is waiting.
func (e *Exporter) exportFullBatches() {
	for e.runCtx.Err() == nil && e.q.len() >= e.cfg.MaxBatchSize {
		e.exportNext()
	}
	e.logDrops(false)
}

// exportQueued exports at least n spans (those queued when it was called) or
// until the queue is empty, in batches.
func (e *Exporter) exportQueued(n int) {
	for n > 0 && e.runCtx.Err() == nil {
		got := e.exportNext()
		if got == 0 {
			break
		}
		n -= got
	}
	e.logDrops(false)
}

// exportNext takes one batch from the queue and exports it; it returns the batch size.
func (e *Exporter) exportNext() int {
	e.batch = e.q.take(e.batch[:0], e.cfg.MaxBatchSize)
	n := len(e.batch)
	if n == 0 {
		return 0
	}
	p := encodePayload(&e.enc, e.batch)
	// The payload has it all: the spans go back to their makers (or the
	// collector) while it is sent.
	for _, s := range e.batch {
		spans.Release(s)
	}
	clear(e.batch)
	e.export(n, p)
	return n
}

// export sends the payload of n spans, retrying as the OTLP spec says, and
// settles it.
func (e *Exporter) export(n int, p *payload) {
	defer p.free()
	start := time.Now()
	bo := newBackoff(e.cfg.Retry)
	for attempt := 1; ; attempt++ {
		ctx, cancel := contextWithTimeout(e.runCtx, e.cfg.Timeout)
		partial, err := e.sender.send(ctx, p)
		cancel()
		if err == nil {
			e.settleSuccess(n, partial)
			return
		}
		if e.runCtx.Err() != nil {
			e.settleFailure(n, func(d *Drops) { d.Shutdown += uint64(n) })
			e.log.Warn("export abandoned at shutdown deadline", "spans", n, "attempts", attempt, "error", err)
			return
		}
		retryable, throttle := classify(err)
		if !retryable {
			e.settleFailure(n, func(d *Drops) { d.NonRetryable += uint64(n) })
			e.log.Error("export failed, not retryable", "spans", n, "attempts", attempt, "error", err)
			return
		}
		wait := bo.next()
		if throttle > 0 {
			// The server knows its own load better than our backoff does.
			wait = throttle
		}
		if e.cfg.Retry.Disabled || time.Since(start)+wait > e.cfg.Retry.MaxElapsedTime {
			e.settleFailure(n, func(d *Drops) { d.RetriesExhausted += uint64(n) })
			e.log.Error("export failed, retries exhausted", "spans", n, "attempts", attempt,
				"elapsed", time.Since(start).Round(time.Millisecond), "error", err)
			return
		}
		e.q.update(func(s *Stats) { s.Retries++ })
		e.log.Debug("export failed, will retry", "spans", n, "attempt", attempt, "wait", wait, "error", err)
		if !sleep(e.runCtx, wait) {
			e.settleFailure(n, func(d *Drops) { d.Shutdown += uint64(n) })
			e.log.Warn("export abandoned at shutdown deadline", "spans", n, "attempts", attempt, "error", err)
			return
		}
	}
}

func (e *Exporter) settleSuccess(n int, p partialSuccess) {
	rejected := uint64(min(max(p.rejected, 0), int64(n)))
	e.q.settle(uint64(n)-rejected, func(d *Drops) { d.Rejected += rejected })
	if rejected > 0 || p.message != "" {
		// Once per batch: the collector sends one message for the whole request.
		e.log.Warn("collector rejected spans", "spans", n, "rejected", rejected, "message", p.message)
	}
}

func (e *Exporter) settleFailure(n int, drop func(*Drops)) {
	e.q.settle(0, func(d *Drops) { drop(d) })
	e.q.update(func(s *Stats) { s.FailedBatches++ })
}

// logDrops reports spans dropped on a full queue since the last report, at most
// every queueFullLogEvery unless final.
func (e *Exporter) logDrops(final bool) {
	d := e.Stats().Dropped
	if d.QueueFull == e.logged.QueueFull {
		return
	}
	if !final && time.Since(e.loggedT) < queueFullLogEvery {
		return
	}
	e.log.Warn("spans dropped: export queue full", "spans", d.QueueFull-e.logged.QueueFull,
		"total", d.QueueFull, "queue_capacity", e.cfg.MaxQueueSize)
	e.logged, e.loggedT = d, time.Now()
}

// classify tells whether an export error may be retried and after how long the
// server asked us to wait (0: use the backoff).
func classify(err error) (retryable bool, throttle time.Duration) {
	var xe *exportError
	if errors.As(err, &xe) {
		return xe.retryable, xe.throttle
	}
	return false, 0
}

// exportError is a transport's verdict on a failed export.
type exportError struct {
	err       error
	retryable bool
	throttle  time.Duration // server-requested delay (Retry-After, RetryInfo)
}

func (e *exportError) Error() string { return e.err.Error() }
func (e *exportError) Unwrap() error { return e.err }
