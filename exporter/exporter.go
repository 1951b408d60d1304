package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hoptrace/hoptrace/spans"
)

// ErrShutdown is returned by Flush after Shutdown.
var ErrShutdown = errors.New("exporter is shut down")

// Exporter is the production spans.Recorder: it queues span records and exports
// them in batches over OTLP. Create it with New and end it with Shutdown.
type Exporter struct {
	cfg    Config
	log    *slog.Logger
	q      *queue
	sender sender

	// runCtx bounds every export attempt and backoff; Shutdown cancels it when its
	// own deadline passes, which turns the worker's remaining work into drops.
	runCtx    context.Context
	cancelRun context.CancelFunc

	flushc   chan chan struct{}
	closing  chan struct{}
	done     chan struct{}
	shutOnce sync.Once

	// Worker-owned.
	enc     encoder
	batch   []*spans.Span
	logged  Drops     // drop counts already reported in a log line
	loggedT time.Time // when the last queue-full line was written
}

var _ spans.Recorder = (*Exporter)(nil)

// sender is one transport's export call. send must not keep p's bytes after
// it returns unless it holds its own reference (see payload).
type sender interface {
	send(ctx context.Context, p *payload) (partialSuccess, error)
	close() error
}

// partialSuccess is the collector's report of spans it accepted the request with
// but refused.
type partialSuccess struct {
	rejected int64
	message  string
}

// New validates cfg, fills its defaults and starts the exporter's worker. It does
// not connect: a collector that is down at start is retried like any other.
func New(cfg Config) (*Exporter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t, err := cfg.target()
	if err != nil {
		return nil, err
	}
	var s sender
	switch cfg.Protocol {
	case ProtocolHTTPProtobuf:
		s, err = newHTTPSender(cfg, t)
	default:
		s, err = newGRPCSender(cfg, t)
	}
	if err != nil {
		return nil, err
	}
	return newExporter(cfg, s), nil
}

func newExporter(cfg Config, s sender) *Exporter {
	ctx, cancel := context.WithCancel(context.Background())
	e := &Exporter{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "exporter"),
		q:         newQueue(cfg.MaxQueueSize, cfg.MaxBatchSize),
		sender:    s,
		runCtx:    ctx,
		cancelRun: cancel,
		flushc:    make(chan chan struct{}),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		batch:     make([]*spans.Span, 0, cfg.MaxBatchSize),
	}
	go e.run()
	return e
}

// Record queues s for export without blocking; a full queue drops s and counts it.
// The exporter takes ownership: s must not change after Record. A nil s is ignored.
func (e *Exporter) Record(s *spans.Span) {
	if s == nil {
		return
	}
	e.q.push(s)
}

// Stats returns a consistent snapshot of the counters.
func (e *Exporter) Stats() Stats { return e.q.snapshot() }

// Flush exports the spans queued now and returns when they are settled (exported
// or dropped), or with ctx's error when it is done first.
func (e *Exporter) Flush(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case e.flushc <- reply:
	case <-e.closing:
		return ErrShutdown
	case <-ctx.Done():
		return fmt.Errorf("flush: %w", ctx.Err())
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush: %w", ctx.Err())
	}
}

// Shutdown stops accepting spans (later ones are dropped with reason shutdown),
// exports what is queued until ctx is done, then drops the rest with reason
// shutdown and closes the connection. When it returns,
// Stats().Produced == Stats().Exported + Stats().Dropped.Total().
// It returns an error wrapping ctx's error when spans were left unsent. Later
// calls wait for the first to finish and return nil.
func (e *Exporter) Shutdown(ctx context.Context) error {
	var err error
	e.shutOnce.Do(func() { err = e.shutdown(ctx) })
	<-e.done
	return err
}

func (e *Exporter) shutdown(ctx context.Context) error {
	e.q.close()
	close(e.closing)
	var ctxErr error
	select {
	case <-e.done:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		e.cancelRun()
		<-e.done
	}
	e.cancelRun()
	closeErr := e.sender.close()
	if closeErr != nil {
		closeErr = fmt.Errorf("exporter shutdown: close: %w", closeErr)
	}
	if ctxErr != nil {
		st := e.Stats()
		ctxErr = fmt.Errorf("exporter shutdown: %d spans dropped in all (%d at shutdown): %w",
			st.Dropped.Total(), st.Dropped.Shutdown, ctxErr)
	}
	return errors.Join(ctxErr, closeErr)
}
