//go:build !linux

package proxy

import "net"

// alive cannot peek portably; a stale connection is caught by the retry instead.
func alive(net.Conn) bool { return true }

// waitReadable cannot wait portably; the read itself waits.
func waitReadable(net.Conn) error { return nil }
