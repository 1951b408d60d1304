package exporter

// Drop reasons, as metric label values.
const (
	ReasonQueueFull        = "queue_full"        // Record found the queue full
	ReasonShutdown         = "shutdown"          // recorded after Shutdown, or unsent at its deadline
	ReasonNonRetryable     = "non_retryable"     // the collector refused the batch for good
	ReasonRetriesExhausted = "retries_exhausted" // still failing at the retry deadline
	ReasonRejected         = "rejected"          // refused by the collector in a partial success
)

// Stats is a consistent snapshot of the exporter's counters. At any time
//
//	Produced == Exported + Dropped.Total() + Queued + InFlight
//
// and once Shutdown has returned Queued and InFlight are 0.
type Stats struct {
	// Produced counts the spans given to Record.
	Produced uint64
	// Exported counts the spans the collector accepted.
	Exported uint64
	// Dropped counts the spans given up on, by reason.
	Dropped Drops
	// Retries counts export attempts after the first one of a batch.
	Retries uint64
	// FailedBatches counts batches dropped whole (non-retryable, retries exhausted,
	// shutdown).
	FailedBatches uint64
	// Queued is the number of spans waiting in the queue; QueueCapacity its bound.
	Queued        int
	QueueCapacity int
	// InFlight is the size of the batch being exported (and retried), if any.
	InFlight int
}

// Drops counts dropped spans by reason.
type Drops struct {
	QueueFull        uint64
	Shutdown         uint64
	NonRetryable     uint64
	RetriesExhausted uint64
	Rejected         uint64
}

// Total is the number of dropped spans, all reasons together.
func (d Drops) Total() uint64 {
	return d.QueueFull + d.Shutdown + d.NonRetryable + d.RetriesExhausted + d.Rejected
}

// ByReason returns the counts keyed by the Reason* label values, for metrics.
func (d Drops) ByReason() map[string]uint64 {
	return map[string]uint64{
		ReasonQueueFull:        d.QueueFull,
		ReasonShutdown:         d.Shutdown,
		ReasonNonRetryable:     d.NonRetryable,
		ReasonRetriesExhausted: d.RetriesExhausted,
		ReasonRejected:         d.Rejected,
	}
}
