// Package testenv decides whether tests that need privileges or real external
// components may run here, so that CI fails where a developer's laptop skips.
package testenv

import (
	"os"
	"testing"
)

// Required reports whether privileged and end-to-end tests must run (and so fail
// rather than skip): CI sets HOPTRACE_REQUIRE_PRIVILEGED=1.
func Required() bool { return os.Getenv("HOPTRACE_REQUIRE_PRIVILEGED") == "1" }

// RequirePrivileged skips t unless the process is root, or fails it when
// privileged tests are required.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if Required() {
		t.Fatal("this test needs root (HOPTRACE_REQUIRE_PRIVILEGED=1 forbids skipping)")
	}
	t.Skip("needs root: run as root or set HOPTRACE_REQUIRE_PRIVILEGED=1 in CI")
}

// Unavailable skips t with reason, or fails it when tests are required.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (HOPTRACE_REQUIRE_PRIVILEGED=1 forbids skipping)", reason)
	}
	t.Skip(reason)
}
