package redirect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/hoptrace/hoptrace/bpf"
)

// EventReader reads redirect decisions from the kernel. One reader per Redirector.
type EventReader struct {
	r  *Redirector
	rd *ringbuf.Reader
}

// Events opens the redirect event stream.
func (r *Redirector) Events() (*EventReader, error) {
	rd, err := ringbuf.NewReader(r.maps.Events)
	if err != nil {
		return nil, fmt.Errorf("open redirect events: %w", err)
	}
	return &EventReader{r: r, rd: rd}, nil
}

// Read blocks for the next event; after Close it returns an error wrapping os.ErrClosed.
func (er *EventReader) Read() (Event, error) {
	rec, err := er.rd.Read()
	if err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return Event{}, fmt.Errorf("read redirect event: %w", os.ErrClosed)
		}
		return Event{}, fmt.Errorf("read redirect event: %w", err)
	}
	var raw bpf.RedirectEvent
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &raw); err != nil {
		return Event{}, fmt.Errorf("decode redirect event: %w", err)
	}
	ev := Event{
		Time:         wallTime(raw.TsNs),
		NetnsCookie:  raw.NetnsCookie,
		SocketCookie: raw.SocketCookie,
		PID:          raw.Pid,
		Comm:         commString(raw.Comm),
		Direction:    Direction(raw.Direction),
		Reason:       Reason(raw.Reason),
		Dst:          netip.AddrPortFrom(fromBPFAddr(raw.Dst), raw.DstPort),
	}
	if ev.Direction == Inbound {
		ev.Src = netip.AddrPortFrom(fromBPFAddr(raw.Src), raw.SrcPort)
	}
	er.r.mu.Lock()
	ev.PodID = er.r.byCookie[raw.NetnsCookie]
	er.r.mu.Unlock()
	return ev, nil
}

// Close stops the reader; a blocked Read returns.
func (er *EventReader) Close() error { return er.rd.Close() }

func commString(c [16]int8) string {
	b := make([]byte, 0, len(c))
	for _, x := range c {
		if x == 0 {
			break
		}
		b = append(b, byte(x))
	}
	return string(b)
}

// EventsLost returns how many events the kernel dropped because the ring buffer
// was full (the reader fell behind).
func (r *Redirector) EventsLost() (uint64, error) {
	c, err := r.Counters()
	return c.EventsLost, err
}

// Counters reads the BPF programs' counters. They live in pinned maps, so they
// go on counting across agent restarts that adopt the pins.
func (r *Redirector) Counters() (Counters, error) {
	var c Counters
	for idx, dst := range map[bpf.RedirectCounter]*uint64{
		bpf.RedirectCounterCOUNTER_EVENTS_LOST: &c.EventsLost,
		bpf.RedirectCounterCOUNTER_REDIRECTED:  &c.Redirected,
		bpf.RedirectCounterCOUNTER_CAPTURED:    &c.Captured,
	} {
		var per []uint64
		if err := r.maps.Counters.Lookup(uint32(idx), &per); err != nil {
			return Counters{}, fmt.Errorf("read BPF counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	c.OrigFromMap, c.OrigUnclaimed = r.orig.fromMap.Load(), r.orig.stale.Load()
	return c, nil
}
