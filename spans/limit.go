package spans

import (
	"math"
	"sync"
	"time"
)

// TokenBucket is a Limiter that allows rate events per second on average and
// up to burst at once. It is safe for concurrent use.
type TokenBucket struct {
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time // when tokens was last brought up to date; zero before the first call
}

// NewTokenBucket returns a full bucket. A rate of 0 (or negative, or NaN)
// refills nothing, so only the burst is ever allowed; a burst below 1 allows
// nothing.
func NewTokenBucket(rate float64, burst int) *TokenBucket {
	if !(rate > 0) {
		rate = 0
	}
	b := float64(max(burst, 0))
	return &TokenBucket{rate: rate, burst: b, tokens: b}
}

// BurstFor is the burst that goes with a rate when nothing else says: one
// second's worth, and at least one so that a small rate still allows something.
func BurstFor(rate float64) int {
	switch {
	case !(rate > 0):
		return 0
	case rate >= math.MaxInt32:
		return math.MaxInt32
	}
	return max(1, int(math.Ceil(rate)))
}

// Allow takes a token if there is one.
func (b *TokenBucket) Allow() bool { return b.allowAt(time.Now()) }

// allowAt is Allow at a given time; time going backwards adds nothing.
func (b *TokenBucket) allowAt(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.last = now
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
