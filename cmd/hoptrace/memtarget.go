package main

import (
	"fmt"
	"log/slog"

	"github.com/hoptrace/hoptrace/memlimit"
)

// defaultMemoryTarget is --memory-target's default (memlimit.DefaultTarget).
const defaultMemoryTarget = "30MiB"

// startMemoryTarget starts steering the garbage collector towards the
// --memory-target size; the returned func stops it. "off" or 0 leaves Go's
// defaults (and GOMEMLIMIT, GOGC) alone.
func startMemoryTarget(flag string, log *slog.Logger) (stop func(), err error) {
	n, err := memlimit.ParseSize(flag)
	if err != nil {
		return nil, fmt.Errorf("--memory-target: %w", err)
	}
	if n == 0 {
		return func() {}, nil
	}
	c, err := memlimit.Start(n)
	if err != nil {
		return nil, fmt.Errorf("--memory-target: %w", err)
	}
	target, ceiling := c.Target()
	log.Debug("memory target", "target_bytes", target, "ceiling_bytes", ceiling)
	return c.Stop, nil
}
