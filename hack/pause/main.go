//go:build unix

// Command pause is the sandbox ("infra") container of every pod in hoptrace's
// local test cluster: it holds the pod's namespaces open, reaps orphaned
// children (it is PID 1 when the pod shares its process namespace) and exits on
// SIGINT or SIGTERM. It does what registry.k8s.io/pause does, built from Go
// because these machines have no registry to pull that image from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child; one SIGCHLD may stand for several.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
