package agent

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hoptrace/hoptrace/proxy"
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
	ring   []flowEntry
	next   int
	full   bool
	subs   map[chan Flow]struct{}
	missed atomic.Uint64 // flows a slow watcher did not get
}

// flowEntry is a finished flow as recorded: a proxied one keeps the proxy's
// numbers and is formatted (addresses, legs, trace id) only when someone reads
// it. Every connection the agent proxies ends here, and formatting each one
// as it closed was a measurable part of the agent's work per connection at
// thousands of new connections a second; the table is read rarely.
type flowEntry struct {
	pod    string // namespace/name, of a proxied flow
	stats  proxy.FlowStats
	bypass *Flow // a bypassed connection's flow, already formatted
}

func (e *flowEntry) flow() Flow {
	if e.bypass != nil {
		return *e.bypass
	}
	return flowFromStats(e.pod, e.stats)
}

func newFlowTable(size int) *flowTable {
	return &flowTable{ring: make([]flowEntry, size), subs: map[chan Flow]struct{}{}}
}

// add records a flow that is formatted already (a bypass event's).
func (t *flowTable) add(f Flow) { t.put(flowEntry{bypass: &f}) }

// addStats records a proxied flow of pod (namespace/name) as the proxy
// reported it.
func (t *flowTable) addStats(pod string, s proxy.FlowStats) {
	t.put(flowEntry{pod: pod, stats: s})
}

func (t *flowTable) put(e flowEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ring[t.next] = e
	t.next = (t.next + 1) % len(t.ring)
	if t.next == 0 {
		t.full = true
	}
	if len(t.subs) == 0 {
		return
	}
	f := e.flow()
	for ch := range t.subs {
		select {
		case ch <- f:
		default:
			// A watcher that cannot keep up loses flows, never the data path.
			t.missed.Add(1)
		}
	}
}

// recent returns finished flows, oldest first. They are formatted after the
// lock is let go: connections closing meanwhile do not wait for it.
func (t *flowTable) recent() []Flow {
	t.mu.Lock()
	var entries []flowEntry
	if t.full {
		entries = append(entries, t.ring[t.next:]...)
	}
	entries = append(entries, t.ring[:t.next]...)
	t.mu.Unlock()
	out := make([]Flow, len(entries))
	for i := range entries {
		out[i] = entries[i].flow()
	}
	return out
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
