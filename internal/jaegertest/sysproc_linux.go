package jaegertest

import "syscall"

// sysProcAttr makes Jaeger die with the test binary (a test that crashes or is
// killed by `go test -timeout` leaves no collector behind) and keeps it out of the
// terminal's process group, so Ctrl-C reaches the test first and cleanup runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
