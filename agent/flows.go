package agent

import (
	"sync"
	"sync/atomic"
	"time"
)

// Flow is one connection as the CLI shows it: proxied (redirected) or bypassed.
type Flow struct {
	Pod        string    `json:"pod"` // namespace/name of the pod it belongs to
	Direction  string    `json:"direction"`
	Client     string    `json:"client"`
	Dst        string    `json:"original_dst"`
	Protocol   string    `json:"protocol"`
	Redirected bool      `json:"redirected"`
	Reason     string    `json:"reason,omitempty"` // why it was bypassed
	Open       bool      `json:"open"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end,omitzero"`
	Requests   int64     `json:"requests"`
	BytesIn    int64     `json:"bytes_in"`
	BytesOut   int64     `json:"bytes_out"`
	// LegsMs maps each leg (outbound-server, outbound-client, ...) to its mean
	// time per request in milliseconds.
	LegsMs      map[string]float64 `json:"legs_ms,omitempty"`
	LastTraceID string             `json:"last_trace_id,omitempty"`
	PID         uint32             `json:"pid,omitempty"`  // bypassed outbound: the process
	Comm        string             `json:"comm,omitempty"` // bypassed outbound: its name
}

// flowTable keeps the most recent finished flows and feeds live watchers.
type flowTable struct {
	mu     sync.Mutex
	ring   []Flow
	next   int
	full   bool
	subs   map[chan Flow]struct{}
	missed atomic.Uint64 // flows a slow watcher did not get
}

func newFlowTable(size int) *flowTable {
	return &flowTable{ring: make([]Flow, size), subs: map[chan Flow]struct{}{}}
}

func (t *flowTable) add(f Flow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ring[t.next] = f
	t.next = (t.next + 1) % len(t.ring)
	if t.next == 0 {
		t.full = true
	}
	for ch := range t.subs {
		select {
		case ch <- f:
		default:
			// A watcher that cannot keep up loses flows, never the data path.
			t.missed.Add(1)
		}
	}
}

// recent returns finished flows, oldest first.
func (t *flowTable) recent() []Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Flow
	if t.full {
		out = append(out, t.ring[t.next:]...)
	}
	return append(out, t.ring[:t.next]...)
}

func (t *flowTable) subscribe() (<-chan Flow, func()) {
	ch := make(chan Flow, 256)
	t.mu.Lock()
	t.subs[ch] = struct{}{}
	t.mu.Unlock()
	return ch, func() {
		t.mu.Lock()
		delete(t.subs, ch)
		t.mu.Unlock()
	}
}
