//go:build unix && !linux

package exporter

import "syscall"

// peekByte peeks at one byte of the socket fd without waiting.
func peekByte(fd uintptr) (int, error) {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}
