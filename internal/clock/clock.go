// Package clock converts kernel monotonic timestamps (bpf_ktime_get_ns) to wall time.
package clock

import "time"

// FromMonotonic converts a CLOCK_MONOTONIC reading in nanoseconds to wall-clock
// time, using the offset between the two clocks measured now.
func FromMonotonic(ns uint64) time.Time {
	now := time.Now()
	mono := monotonicNow()
	return now.Add(time.Duration(int64(ns) - mono))
}
