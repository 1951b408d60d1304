// Package cores runs a process's Go code on as many CPUs as its load needs:
// it steers runtime.GOMAXPROCS between one and a ceiling after the CPU time
// the process used.
//
// Why: a proxy's work comes in small pieces, each started by a wake-up (a
// socket became readable, a goroutine handed a request on). Whenever the Go
// runtime makes a goroutine runnable while a P is idle, it wakes a thread to
// spin for work on that P (runtime.wakep), and that thread mostly finds none
// and goes back to sleep: two context switches and some spinning per wake-up,
// paid on every request whether or not the second P had anything to do. On the
// benchmark machine (2 cores, load generator and apps beside the agent) one P
// instead of two cut the agent's CPU per request by about 30 % at 1,000 req/s
// (docs/benchmarks.md). At full load one P is not enough (a traced agent lost
// a quarter of its throughput), and a node agent must not be capped at one
// core when its node is busy, so the number follows the load: doubled as soon
// as the Ps there are half busy, lowered one at a time once the load has
// fitted in fewer for a while. Envoy's --concurrency, Linkerd's proxy cores
// and ztunnel's worker threads are fixed counts; Fixed is that.
package cores

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// Interval is how often the process's CPU use is read and the number of
	// Ps decided.
	Interval = 100 * time.Millisecond
	// upAt: when the process kept its Ps this busy over one interval, they
	// are doubled. Half busy is where, in the simplest queue (M/M/1), a piece
	// of work waits on average as long as it takes: past it, waiting for the
	// P grows faster than the P's work. Measured: 85 % left a traced agent at
	// full load on one P with 0.77x the throughput of two
	// (docs/benchmarks.md), while 1,000 to 5,000 req/s stay below half of
	// one.
	upAt = 0.5
	// downAt and downAfter: when the process's use would have kept one P
	// fewer busy at most this fraction of the time, for downAfter intervals
	// in a row, one P goes. Below upAt, so that the load that brought a P
	// does not take it away again; slow, so that a burst that comes back
	// finds the Ps still there.
	downAt    = 0.35
	downAfter = 20
)

// ErrFlag is returned by ParseFlag for what is neither "auto" nor a count.
var ErrFlag = errors.New(`want "auto" or a number of cores of at least 1`)

// ParseFlag reads a --cores value: "auto" is 0, a count is itself.
func ParseFlag(s string) (int, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "auto") {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("cores %q: %w", s, ErrFlag)
	}
	return n, nil
}

// steer is the decision, apart from the clock and the runtime: the number of
// Ps for the next interval, given n Ps during one in which the process used
// busy CPUs (CPU seconds over wall seconds). Its only state is how many
// intervals in a row the load has fitted in one P fewer.
type steer struct {
	max  int // the ceiling, at least 1
	calm int
}

// next returns the number of Ps for the next interval.
func (s *steer) next(n int, busy float64) int {
	switch {
	case busy >= upAt*float64(n) && n < s.max:
		s.calm = 0
		return min(2*n, s.max)
	case n > 1 && busy < downAt*float64(n-1):
		s.calm++
		if s.calm >= downAfter {
			s.calm = 0
			return n - 1
		}
	default:
		s.calm = 0
	}
	return n
}

// Stats is what a Controller did.
type Stats struct {
	Current, Max int
	Ups, Downs   uint64 // changes of the number of Ps
}

// Controller steers GOMAXPROCS until Stop.
type Controller struct {
	max        int
	ups, downs atomic.Uint64
	stop       chan struct{}
	done       chan struct{}
	once       sync.Once
}

// Auto starts steering GOMAXPROCS between 1 and ceiling, starting at 1. A
// ceiling below 1 is taken as 1 (nothing to steer: the controller only holds
// it there). The usual ceiling is what the runtime chose before any change:
// runtime.GOMAXPROCS(0) at start, which follows the CPUs the process may use
// (its affinity, its cgroup's CPU limit) or the GOMAXPROCS variable.
func Auto(ceiling int) *Controller {
	c := &Controller{max: max(ceiling, 1), stop: make(chan struct{}), done: make(chan struct{})}
	runtime.GOMAXPROCS(1)
	if c.max == 1 {
		close(c.done) // nothing to steer: no ticks on a one-CPU node
		return c
	}
	go c.run()
	return c
}

func (c *Controller) run() {
	defer close(c.done)
	s := steer{max: c.max}
	t := time.NewTicker(Interval)
	defer t.Stop()
	lastCPU, lastAt := cpuTime(), time.Now()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			// Both clocks read now, not at the tick: on one busy P this
			// goroutine may run late, and a tick's time would then make the
			// interval look shorter than the CPU time read in it.
			cpu, now := cpuTime(), time.Now()
			wall := now.Sub(lastAt)
			if wall <= 0 {
				continue
			}
			busy := float64(cpu-lastCPU) / float64(wall)
			lastCPU, lastAt = cpu, now
			n := runtime.GOMAXPROCS(0)
			next := s.next(n, busy)
			switch {
			case next > n:
				c.ups.Add(1)
				runtime.GOMAXPROCS(next)
			case next < n:
				c.downs.Add(1)
				runtime.GOMAXPROCS(next)
			}
		}
	}
}

// Stats reports the current number of Ps, the ceiling and the changes so far.
func (c *Controller) Stats() Stats {
	return Stats{Current: runtime.GOMAXPROCS(0), Max: c.max, Ups: c.ups.Load(), Downs: c.downs.Load()}
}

// Stop ends the steering and leaves the process at the ceiling.
func (c *Controller) Stop() {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		runtime.GOMAXPROCS(c.max)
	})
}

// Fixed sets GOMAXPROCS to n.
func Fixed(n int) { runtime.GOMAXPROCS(n) }

// cpuTime is the CPU time the whole process used so far (user and system,
// every thread).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
