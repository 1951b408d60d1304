package redirect

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWallTimeOfKernelStamp(t *testing.T) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	stamped := time.Now()
	got := wallTime(uint64(ts.Nano() - int64(time.Second)))
	if d := stamped.Add(-time.Second).Sub(got).Abs(); d > 50*time.Millisecond {
		t.Errorf("a stamp 1 s old reads as %v, %v off", got, d)
	}
}
