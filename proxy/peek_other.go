//go:build !linux

package proxy

import "net"

// peeker cannot peek portably: the read itself waits, and a stale upstream
// connection is caught by the retry instead.
type peeker struct{}

func newPeeker(net.Conn) *peeker { return &peeker{} }

func (*peeker) wait() error { return nil }

func (*peeker) idle() bool { return true }

func (*peeker) canWait() bool { return false }

func (p *peeker) waitAfter(send func() error) error {
	if err := send(); err != nil {
		return err
	}
	return p.wait()
}

func (*peeker) canWaitAfter() bool { return false }
