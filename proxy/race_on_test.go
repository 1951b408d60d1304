//go:build race

package proxy

// raceEnabled: the race detector's instrumentation grows goroutine stacks,
// so tests that measure them do not apply.
const raceEnabled = true
