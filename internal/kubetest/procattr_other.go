//go:build !linux

package kubetest

import "syscall"

// procAttr has no parent-death signal to set outside Linux; t.Cleanup still
// stops the servers on every normal exit.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
