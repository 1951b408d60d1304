package exporter

import "github.com/hoptrace/hoptrace/internal/rawsock"

// peekByte peeks at one byte of the socket fd without waiting, as a raw call
// (rawsock.Peek says why).
func peekByte(fd uintptr) (int, error) {
	n, errno := rawsock.Peek(fd)
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}
