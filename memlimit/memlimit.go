// Package memlimit keeps a process's Go memory near a target by steering the
// runtime's soft memory limit (runtime/debug.SetMemoryLimit).
//
// The garbage collector's default goal is twice the live heap (GOGC=100), so a
// burst that briefly doubles the live heap (a client opening a thousand
// connections at once) leaves the heap, and the resident set, at four times
// its quiet size for as long as the process lives: Go rarely gives pages back.
// A soft limit at the target makes the collector run earlier instead, while
// the live heap is small enough. A fixed limit below what the live heap needs
// would make it run all the time (up to half the CPU, the runtime's cap), so
// after every collection the limit is raised to what the live heap needs with
// a quarter of it again as headroom: at worst the collector works as with
// GOGC=25, never harder. (Half as headroom left the agent above 50 MB in one
// benchmark run of three, and a quarter cost no CPU measurably:
// docs/benchmarks.md.) It never goes above the user's GOMEMLIMIT or, without one, 90%
// of the process's cgroup memory limit.
package memlimit

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultTarget is the agent's default: with the binary's own pages (about
// 19 MB resident) it keeps a node agent with 1,000 open connections under
// 50 MB (docs/benchmarks.md).
const DefaultTarget = 30 << 20

// Stats is what a limit is computed from, in bytes.
type Stats struct {
	Live    uint64 // live heap, as marked by the last collection
	NonHeap uint64 // stacks, runtime metadata and other memory outside the heap
}

// Limit is the soft memory limit for target: the target while the live heap
// leaves the collector at least a quarter of it as headroom under it, more
// when it does not, and never above ceiling.
func Limit(target, ceiling int64, s Stats) int64 {
	need := s.NonHeap + s.Live + s.Live/4
	// The runtime keeps a few percent under the limit as its own slack
	// (memoryLimitHeapGoalHeadroomPercent): add them back.
	need += need / 16
	limit := target
	if need > uint64(limit) {
		limit = int64(min(need, math.MaxInt64))
	}
	return min(limit, ceiling)
}

// Controller steers the runtime's memory limit after every collection.
type Controller struct {
	target, ceiling, previous int64
	stopped                   atomic.Bool
	mu                        sync.Mutex
	samples                   []metrics.Sample
}

// Start sets the memory limit for target and keeps adjusting it after every
// collection until Stop. target must be positive.
func Start(target int64) (*Controller, error) {
	if target <= 0 {
		return nil, fmt.Errorf("memory target %d: must be positive", target)
	}
	prev := debug.SetMemoryLimit(-1)
	c := &Controller{target: target, ceiling: Ceiling(prev, os.Getenv("GOMEMLIMIT") != "", cgroupLimit()), previous: prev}
	c.samples = []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	c.adjust()
	c.arm()
	return c, nil
}

// Ceiling is the highest limit the controller may set: the limit in force
// when it started if the user set GOMEMLIMIT, else 90% of the cgroup's
// memory limit (0: none), else none.
func Ceiling(current int64, userSet bool, cgroup int64) int64 {
	switch {
	case userSet:
		return current
	case cgroup > 0:
		return cgroup / 10 * 9
	}
	return math.MaxInt64
}

// Target returns the target and the limit's ceiling.
func (c *Controller) Target() (target, ceiling int64) { return c.target, c.ceiling }

// Stop ends the adjustments and puts back the limit that was in force before
// Start.
func (c *Controller) Stop() {
	if c.stopped.Swap(true) {
		return
	}
	c.mu.Lock()
	debug.SetMemoryLimit(c.previous)
	c.mu.Unlock()
}

// arm registers a cleanup on an object nothing references: it runs after the
// next collection, adjusts the limit and arms the next one.
func (c *Controller) arm() {
	// A pointer field keeps the sentinel out of the tiny allocator, whose
	// blocks hold several objects and are freed together, late.
	type sentinel struct{ p *byte }
	runtime.AddCleanup(&sentinel{}, func(c *Controller) {
		if c.stopped.Load() {
			return
		}
		c.adjust()
		c.arm()
	}, c)
}

func (c *Controller) adjust() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped.Load() {
		return
	}
	metrics.Read(c.samples)
	v := func(i int) uint64 {
		if c.samples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return c.samples[i].Value.Uint64()
	}
	live, total, released, free, objects, unused := v(0), v(1), v(2), v(3), v(4), v(5)
	var nonHeap uint64
	if heap := released + free + objects + unused; total > heap {
		nonHeap = total - heap
	}
	debug.SetMemoryLimit(Limit(c.target, c.ceiling, Stats{Live: live, NonHeap: nonHeap}))
}

// cgroupLimit is memory.max of the process's cgroup v2, 0 when unlimited or
// unknown.
func cgroupLimit() int64 {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			m, err := os.ReadFile("/sys/fs/cgroup" + path + "/memory.max")
			if err != nil {
				return 0
			}
			n, err := strconv.ParseInt(strings.TrimSpace(string(m)), 10, 64)
			if err != nil {
				return 0 // "max"
			}
			return n
		}
	}
	return 0
}

// ErrSize reports a size ParseSize does not understand.
var ErrSize = errors.New("want a size such as 30MiB, 512KiB, 1GiB or 0")

// ParseSize reads a size in bytes with GOMEMLIMIT's suffixes (B, KiB, MiB,
// GiB, TiB) or none (bytes). "off" is 0.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "off" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: %w", s, ErrSize)
	}
	return n * mult, nil
}
