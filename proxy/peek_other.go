//go:build !linux

package proxy

import "net"

// alive cannot peek portably; a stale connection is caught by the retry instead.
func (u *upstream) alive() bool { return true }

// livenessPeek is Linux-only.
type livenessPeek struct{}

// waitReadable cannot wait portably; the read itself waits.
func waitReadable(net.Conn) error { return nil }
