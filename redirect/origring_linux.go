package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/bpf"
)

// origTable finds the original destination of a connection accepted on an
// outbound listener. sockops hands each one over in orig_ring, which this reads
// from shared memory, without a system call (a bpf() look-up per connection
// was the largest part of what capture cost per new connection); records wait
// in pending until their connection is accepted, as several pods' connections
// interleave. A record the ring had no room for is in orig_by_port.
type origTable struct {
	mu        sync.Mutex
	ring      *ringConsumer // nil once closed
	pending   map[bpf.RedirectPortKey]pendingDst
	fallback  *ebpf.Map
	lastSweep time.Time
	stale     atomic.Uint64 // records dropped unclaimed
	fromMap   atomic.Uint64 // destinations found in orig_by_port: the ring was full
}

type pendingDst struct {
	dst  netip.AddrPort
	seen time.Time // when it was read from the ring
}

const (
	// A record's connection is accepted within milliseconds of the record;
	// one whose connection never is (the listener closed first, the client
	// gave up in the accept queue) is dropped after pendingTTL, looked for
	// once pending holds more than pendingSweepAbove and at most every
	// pendingSweepEvery.
	pendingTTL        = 30 * time.Second
	pendingSweepAbove = 1024
	pendingSweepEvery = 10 * time.Second
	// A record reserved before the one wanted may still be being written (on
	// another CPU, inside a BPF program: a few hundred nanoseconds).
	busySpins = 1 << 16
)

// newOrigTable maps ring. A ring nobody reads would hold the destinations of
// the first thousands of connections for good, so there is no going on
// without it.
func newOrigTable(ring, fallback *ebpf.Map) (*origTable, error) {
	rc, err := mapRing(ring)
	if err != nil {
		return nil, err
	}
	return &origTable{ring: rc, pending: map[bpf.RedirectPortKey]pendingDst{}, fallback: fallback}, nil
}

// take returns (and forgets) the original destination recorded under key.
func (t *origTable) take(key bpf.RedirectPortKey) (netip.AddrPort, error) {
	t.mu.Lock()
	// Read everything the ring holds first: a newer record under the same key
	// (the port used again) is the one wanted, and it replaces an older one.
	// The wanted one is usually the ring's last: it skips pending.
	dst, ok := t.drainLocked(key)
	if p, waited := t.pending[key]; waited {
		delete(t.pending, key)
		if ok {
			t.stale.Add(1) // an older record under the same key
		} else {
			dst, ok = p.dst, true
		}
	}
	t.mu.Unlock()
	if ok {
		return dst, nil
	}
	var od bpf.RedirectOrigDst
	// Lookup-and-delete keeps the map small: each record is read exactly once.
	if err := t.fallback.LookupAndDelete(&key, &od); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return netip.AddrPort{}, ErrNoOriginalDst
		}
		return netip.AddrPort{}, err
	}
	t.fromMap.Add(1)
	return origAddr(&od), nil
}

func origAddr(d *bpf.RedirectOrigDst) netip.AddrPort {
	return netip.AddrPortFrom(fromBPFAddr(d.Ip), d.Port)
}

// forget drops the records of a pod's connections (by its netns cookie) that
// were never accepted: the pod is detached.
func (t *origTable) forget(cookie uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drainLocked(bpf.RedirectPortKey{}) // no record has a zero key: all go to pending
	for k := range t.pending {
		if k.NetnsCookie == cookie {
			delete(t.pending, k)
			t.stale.Add(1)
		}
	}
}

// drainLocked moves the ring's records to pending, but for the newest one
// under want, which it returns.
func (t *origTable) drainLocked(want bpf.RedirectPortKey) (dst netip.AddrPort, found bool) {
	if t.ring == nil {
		return netip.AddrPort{}, false
	}
	var now time.Time
	t.ring.drain(func(rec *bpf.RedirectOrigRec) {
		if now.IsZero() {
			now = time.Now()
		}
		d := origAddr(&rec.Dst)
		if rec.Key == want {
			if found {
				t.stale.Add(1)
			}
			dst, found = d, true
			return
		}
		if _, ok := t.pending[rec.Key]; ok {
			t.stale.Add(1) // an unclaimed record under the same key, replaced
		}
		t.pending[rec.Key] = pendingDst{d, now}
	})
	if len(t.pending) > pendingSweepAbove && !now.IsZero() && now.Sub(t.lastSweep) > pendingSweepEvery {
		t.lastSweep = now
		for k, p := range t.pending {
			if now.Sub(p.seen) > pendingTTL {
				delete(t.pending, k)
				t.stale.Add(1)
			}
		}
	}
	return dst, found
}

// close unmaps the ring; a resolver still running afterwards finds
// orig_by_port only (its map closed too, by then: an error).
func (t *origTable) close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ring == nil {
		return nil
	}
	err := t.ring.close()
	t.ring = nil
	return err
}

// ringConsumer reads a BPF ring buffer from its shared memory: the consumer
// page (this side's position, writable), then the producer's page and the
// data pages, mapped twice in a row so a record that wraps reads straight
// (Documentation/bpf/ringbuf.rst). It never waits: records are looked for
// when a connection is accepted, so the producer sends no wake-ups.
type ringConsumer struct {
	cons, prod []byte
	consPos    *uint64
	prodPos    *uint64
	data       []byte
	mask       uint64
}

const (
	ringHdrSize = 8
	ringBusy    = 1 << 31
	ringDiscard = 1 << 30
)

func mapRing(m *ebpf.Map) (*ringConsumer, error) {
	page := os.Getpagesize()
	size := int(m.MaxEntries())
	cons, err := unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map ring consumer page: %w", err)
	}
	prod, err := unix.Mmap(m.FD(), int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("map ring data: %w", err)
	}
	return &ringConsumer{
		cons: cons, prod: prod,
		consPos: (*uint64)(unsafe.Pointer(&cons[0])),
		prodPos: (*uint64)(unsafe.Pointer(&prod[0])),
		data:    prod[page:],
		mask:    uint64(size - 1),
	}, nil
}

// drain hands each committed record to f and moves the consumer position
// past it. It stops at the end or at a record still being written that does
// not complete within busySpins looks.
func (r *ringConsumer) drain(f func(*bpf.RedirectOrigRec)) {
	cons := atomic.LoadUint64(r.consPos)
	prod := atomic.LoadUint64(r.prodPos)
	var rec bpf.RedirectOrigRec
	for cons < prod {
		hdr := (*uint32)(unsafe.Pointer(&r.data[cons&r.mask]))
		n := atomic.LoadUint32(hdr)
		for spins := 0; n&ringBusy != 0; spins++ {
			if spins == busySpins {
				return
			}
			runtime.Gosched()
			n = atomic.LoadUint32(hdr)
		}
		size := n &^ (ringBusy | ringDiscard)
		if n&ringDiscard == 0 && size == uint32(unsafe.Sizeof(rec)) {
			start := (cons + ringHdrSize) & r.mask
			rec = *(*bpf.RedirectOrigRec)(unsafe.Pointer(&r.data[start]))
			f(&rec)
		}
		cons += (ringHdrSize + uint64(size) + 7) &^ 7
		atomic.StoreUint64(r.consPos, cons)
	}
}

func (r *ringConsumer) close() error {
	return errors.Join(unix.Munmap(r.prod), unix.Munmap(r.cons))
}
