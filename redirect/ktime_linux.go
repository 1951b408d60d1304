package redirect

import (
	"time"

	"golang.org/x/sys/unix"
)

// wallTime converts a kernel CLOCK_MONOTONIC reading (bpf_ktime_get_ns) in
// nanoseconds to wall-clock time, with the offset between the two clocks
// measured now: events are read moments after the kernel stamps them.
func wallTime(ns uint64) time.Time {
	now := time.Now()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return now.Add(time.Duration(int64(ns) - ts.Nano()))
}
