//go:build !linux

package proxy

import "net"

// alive cannot peek portably; a stale connection is caught by the retry instead.
func (u *upstream) alive() bool { return true }

// livenessPeek is Linux-only.
type livenessPeek struct{}

// readWaiter cannot wait portably; the read itself waits.
type readWaiter struct{}

func newReadWaiter(net.Conn) *readWaiter { return nil }

func (*readWaiter) wait() error { return nil }
