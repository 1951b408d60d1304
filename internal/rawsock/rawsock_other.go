//go:build !linux

package rawsock

import "net"

// Wrap: raw socket calls are made on Linux only (rawsock_linux.go).
func Wrap(c net.Conn) net.Conn { return c }
