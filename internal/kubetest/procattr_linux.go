package kubetest

import "syscall"

// procAttr kills a server when the thread that started it dies, so a test binary
// that crashes or is killed by a timeout leaves no etcd or API server behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
