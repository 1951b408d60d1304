package cores

import (
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseFlag(t *testing.T) {
	for in, want := range map[string]int{"auto": 0, "AUTO": 0, " auto ": 0, "1": 1, "8": 8} {
		got, err := ParseFlag(in)
		if err != nil || got != want {
			t.Errorf("ParseFlag(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "two", "1.5", "automatic"} {
		if _, err := ParseFlag(in); !errors.Is(err, ErrFlag) {
			t.Errorf("ParseFlag(%q): err %v, want ErrFlag", in, err)
		}
	}
}

func TestSteerDoublesWhenThePsAreBusy(t *testing.T) {
	s := steer{max: 6}
	for _, c := range []struct {
		n    int
		busy float64
		want int
	}{
		{1, 0.3, 1},  // 30 % of a core: one P is enough
		{1, 0.49, 1}, // below upAt
		{1, 0.5, 2},
		{2, 1.1, 4},
		{4, 2.5, 6}, // capped at the ceiling
		{6, 6.2, 6},
	} {
		if got := s.next(c.n, c.busy); got != c.want {
			t.Errorf("next(%d, %.2f) = %d, want %d", c.n, c.busy, got, c.want)
		}
	}
}

func TestSteerComesDownOnlyAfterALongCalm(t *testing.T) {
	s := steer{max: 4}
	n := 4
	// 1.2 cores would keep three Ps 40 % busy: above downAt, so four stay.
	for range 3 * downAfter {
		if n = s.next(n, 1.2); n != 4 {
			t.Fatalf("came down to %d at 1.2 busy cores", n)
		}
	}
	// 0.9 cores fit in three Ps at 30 %: one goes, but only after downAfter
	// intervals, and a busier interval in between starts the count again.
	for i := range downAfter - 1 {
		if n = s.next(n, 0.9); n != 4 {
			t.Fatalf("came down after %d calm intervals", i+1)
		}
	}
	if n = s.next(n, 1.5); n != 4 {
		t.Fatalf("next(4, 1.5) = %d", n)
	}
	for range downAfter - 1 {
		n = s.next(n, 0.9)
	}
	if n != 4 {
		t.Fatalf("the busier interval did not restart the count: at %d", n)
	}
	if n = s.next(n, 0.9); n != 3 {
		t.Fatalf("after %d calm intervals: %d Ps, want 3", downAfter, n)
	}
	// Idle: down one at a time, never below one.
	for range 10 * downAfter {
		n = s.next(n, 0)
	}
	if n != 1 {
		t.Fatalf("idle: %d Ps, want 1", n)
	}
}

// TestAutoFollowsTheLoad runs the controller on the real runtime: CPU-bound
// goroutines make it add a P, and their end makes it take it away again.
func TestAutoFollowsTheLoad(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs to have a second P to add")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	c := Auto(2)
	defer c.Stop()
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("Auto starts at %d Ps, want 1", got)
	}

	var stop atomic.Bool
	for range 2 {
		go func() {
			for !stop.Load() {
			}
		}()
	}
	waitFor(t, "a second P under load", 15*time.Second, func() bool { return runtime.GOMAXPROCS(0) == 2 })
	stop.Store(true)
	// downAfter calm intervals, plus the one still busy when the burners ended.
	waitFor(t, "back to one P when idle", 15*time.Second, func() bool { return runtime.GOMAXPROCS(0) == 1 })

	st := c.Stats()
	if st.Ups < 1 || st.Downs < 1 || st.Max != 2 || st.Current != 1 {
		t.Errorf("Stats() = %+v, want ≥ 1 up and down, max 2, current 1", st)
	}
	c.Stop()
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("after Stop: %d Ps, want the ceiling 2", got)
	}
}

func waitFor(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v (GOMAXPROCS %d)", what, limit, runtime.GOMAXPROCS(0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With one CPU there is nothing to steer: Auto holds one P and Stop still
// returns.
func TestAutoWithOneCPU(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	c := Auto(0)
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("Auto(0): %d Ps, want 1", n)
	}
	if st := c.Stats(); st.Max != 1 {
		t.Errorf("Stats().Max = %d, want 1", st.Max)
	}
	c.Stop()
	c.Stop() // twice is fine
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("after Stop: %d Ps, want 1", n)
	}
}
