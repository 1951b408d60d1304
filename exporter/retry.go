package exporter

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Backoff shape of the OpenTelemetry Go SDK's exporters: each interval 1.5 times
// the last, randomized by ±50% so that agents restarted together do not retry in
// lockstep against a recovering collector.
const (
	backoffMultiplier = 1.5
	backoffJitter     = 0.5
)

type backoff struct {
	cfg     RetryConfig
	current time.Duration
	rand    func() float64 // [0,1); replaced in tests
}

func newBackoff(cfg RetryConfig) *backoff {
	return &backoff{cfg: cfg, current: cfg.InitialInterval, rand: rand.Float64}
}

// next returns the wait before the next attempt.
func (b *backoff) next() time.Duration {
	base := b.current
	if b.current < b.cfg.MaxInterval {
		b.current = min(time.Duration(float64(b.current)*backoffMultiplier), b.cfg.MaxInterval)
	}
	delta := backoffJitter * float64(base)
	return time.Duration(float64(base) - delta + b.rand()*2*delta)
}

// sleep waits d or until ctx is done; it reports whether it slept the whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP-date.
// It returns 0 when the header is absent, malformed or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
