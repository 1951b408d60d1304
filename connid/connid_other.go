//go:build !linux

package connid

import (
	"fmt"
	"net"
	"runtime"
)

// Table is the record of the connections of one cgroup's sockets.
type Table struct{}

// Open fails: connection identity needs Linux.
func Open(string) (*Table, error) {
	return nil, fmt.Errorf("%s: %w", runtime.GOOS, ErrNotSupported)
}

// Close does nothing.
func (*Table) Close() error { return nil }

// Identify knows nothing.
func (*Table) Identify(net.Conn) (ID, Ends, bool) { return ID{}, Ends{}, false }
