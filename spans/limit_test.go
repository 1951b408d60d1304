package spans

import (
	"math"
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type call struct {
		at   time.Duration
		want bool
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		calls []call
	}{
		{name: "burst then empty", rate: 1, burst: 3, calls: []call{{0, true}, {0, true}, {0, true}, {0, false}, {0, false}}},
		{name: "refills at the rate", rate: 10, burst: 1, calls: []call{
			{0, true}, {50 * time.Millisecond, false}, {100 * time.Millisecond, true}, {150 * time.Millisecond, false}, {200 * time.Millisecond, true},
		}},
		{name: "refill stops at the burst", rate: 100, burst: 2, calls: []call{
			{0, true}, {0, true}, {time.Hour, true}, {time.Hour, true}, {time.Hour, false},
		}},
		{name: "fractional tokens add up", rate: 4, burst: 1, calls: []call{
			{0, true}, {100 * time.Millisecond, false}, {200 * time.Millisecond, false}, {250 * time.Millisecond, true},
		}},
		{name: "time going backwards adds nothing", rate: 1, burst: 1, calls: []call{
			{time.Second, true}, {0, false}, {time.Second, false}, {2 * time.Second, true},
		}},
		{name: "rate 0: the burst only", rate: 0, burst: 2, calls: []call{{0, true}, {0, true}, {time.Hour, false}}},
		{name: "negative rate is 0", rate: -5, burst: 1, calls: []call{{0, true}, {time.Hour, false}}},
		{name: "NaN rate is 0", rate: math.NaN(), burst: 1, calls: []call{{0, true}, {time.Hour, false}}},
		{name: "burst 0 allows nothing", rate: 1000, burst: 0, calls: []call{{0, false}, {time.Second, false}}},
		{name: "negative burst allows nothing", rate: 1000, burst: -1, calls: []call{{0, false}, {time.Second, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewTokenBucket(tt.rate, tt.burst)
			for i, c := range tt.calls {
				if got := b.allowAt(at(c.at)); got != c.want {
					t.Errorf("call %d at %v: Allow = %v, want %v", i, c.at, got, c.want)
				}
			}
		})
	}
}

// Over any stretch, a bucket allows at most rate × elapsed + burst.
func TestTokenBucketBound(t *testing.T) {
	const rate, burst = 100, 100
	b := NewTokenBucket(rate, burst)
	t0 := time.Unix(1000, 0)
	allowed := 0
	const calls, step = 100000, 37 * time.Microsecond // 10,000 calls per 0.37 s
	for i := range calls {
		if b.allowAt(t0.Add(time.Duration(i) * step)) {
			allowed++
		}
	}
	elapsed := time.Duration(calls-1) * step
	limit := int(rate*elapsed.Seconds()) + burst
	if allowed > limit || allowed < limit-2 {
		t.Errorf("allowed %d over %v, want at most %d and not much less", allowed, elapsed, limit)
	}
}

func TestBurstFor(t *testing.T) {
	for _, tt := range []struct {
		rate float64
		want int
	}{
		{100, 100}, {0.5, 1}, {2.2, 3}, {0, 0}, {-1, 0}, {math.NaN(), 0}, {math.Inf(1), math.MaxInt32}, {1e12, math.MaxInt32},
	} {
		if got := BurstFor(tt.rate); got != tt.want {
			t.Errorf("BurstFor(%v) = %d, want %d", tt.rate, got, tt.want)
		}
	}
}
