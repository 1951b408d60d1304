//go:build !linux

package clock

import "time"

var start = time.Now()

func monotonicNow() int64 { return int64(time.Since(start)) }
