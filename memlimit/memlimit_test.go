package memlimit

import (
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestLimit(t *testing.T) {
	const target = 30 << 20
	for _, tc := range []struct {
		name    string
		ceiling int64
		s       Stats
		want    int64
	}{
		{"quiet: the target", math.MaxInt64, Stats{Live: 8 << 20, NonHeap: 6 << 20}, target},
		{"live heap needs more: a quarter of it as headroom", math.MaxInt64, Stats{Live: 40 << 20, NonHeap: 10 << 20}, 60 << 20 * 17 / 16},
		{"just below", math.MaxInt64, Stats{Live: 17 << 20, NonHeap: 6 << 20}, target},
		{"user's GOMEMLIMIT caps it", 50 << 20, Stats{Live: 40 << 20, NonHeap: 10 << 20}, 50 << 20},
		{"ceiling under the target", 20 << 20, Stats{Live: 1 << 20}, 20 << 20},
	} {
		if got := Limit(target, tc.ceiling, tc.s); got != tc.want {
			t.Errorf("%s: Limit = %d MiB, want %d MiB", tc.name, got>>20, tc.want>>20)
		}
	}
}

func TestCeiling(t *testing.T) {
	if got := Ceiling(400<<20, true, 512<<20); got != 400<<20 {
		t.Errorf("GOMEMLIMIT set: %d, want it", got)
	}
	if got := Ceiling(math.MaxInt64, false, 1000); got != 900 {
		t.Errorf("cgroup limit 1000: %d, want 900", got)
	}
	if got := Ceiling(math.MaxInt64, false, 0); got != math.MaxInt64 {
		t.Errorf("no limit anywhere: %d", got)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"30MiB": 30 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "2TiB": 2 << 40,
		"4096": 4096, "100B": 100, "0": 0, "off": 0, " 8MiB ": 8 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30MB", "-1MiB", "1.5GiB", "MiB", "99999999999TiB", "lots"} {
		if _, err := ParseSize(in); !errors.Is(err, ErrSize) {
			t.Errorf("ParseSize(%q): err %v, want ErrSize", in, err)
		}
	}
}

func TestStartRejectsNonPositive(t *testing.T) {
	if _, err := Start(0); err == nil {
		t.Error("Start(0): no error")
	}
}

// limitBecomes polls the runtime's memory limit until ok says yes.
func limitBecomes(t *testing.T, what string, ok func(int64) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		l := debug.SetMemoryLimit(-1)
		if ok(l) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("memory limit %d MiB: never %s", l>>20, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// The controller holds the limit at the target while the live heap is small,
// lets it follow a live heap that outgrows it (never leaving the collector
// less than a quarter of the live heap as headroom), comes back down when that heap is
// gone, and puts the old limit back on Stop.
func TestControllerFollowsLiveHeap(t *testing.T) {
	const target = 24 << 20
	before := debug.SetMemoryLimit(-1)
	c, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	limitBecomes(t, "the target", func(l int64) bool { return l == target })

	live := make([][]byte, 48)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	// The limit is adjusted by a cleanup that runs after a collection, on
	// the live heap that collection marked: one that ran during the
	// allocations above may set a limit from a smaller live heap just after
	// this test's own collection. So wait for the adjustment that follows a
	// collection of all 48 MiB, and ask the collector's goal, which is the
	// point: a quarter of the live heap as headroom.
	limitBecomes(t, "raised to leave a heap goal of 1.25 times a 48 MiB live heap", func(l int64) bool {
		return l >= 60<<20 && heapGoal() >= 60<<20
	})
	runtime.KeepAlive(live)
	live = nil

	limitBecomes(t, "back at the target", func(l int64) bool { return l == target })
	c.Stop()
	if l := debug.SetMemoryLimit(-1); l != before {
		t.Errorf("after Stop: limit %d, want the previous %d", l, before)
	}
}

// The point of it all: with the same live heap, the collector's goal is lower
// with the target than with GOGC alone, which doubles the live heap.
func TestTargetLowersHeapGoal(t *testing.T) {
	live := make([][]byte, 12)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	plain := heapGoal()
	const target = 26 << 20
	c, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	runtime.GC()
	runtime.GC()
	with := heapGoal()
	runtime.KeepAlive(live)
	t.Logf("heap goal with 12 MiB live: %d MiB by GOGC alone, %d MiB with a 26 MiB target", plain>>20, with>>20)
	if with >= plain || with > target {
		t.Errorf("heap goal %d MiB with the target, %d MiB without: want lower, and under the target", with>>20, plain>>20)
	}
}
