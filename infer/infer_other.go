//go:build !linux

package infer

import (
	"net"

	"github.com/hoptrace/hoptrace/spans"
)

// Supported returns ErrNotSupported off Linux.
func Supported() error { return ErrNotSupported }

// Inferrer is Linux-only.
type Inferrer struct{}

// Open returns ErrNotSupported off Linux.
func Open() (*Inferrer, error) { return nil, ErrNotSupported }

func (i *Inferrer) Close() error { return nil }
func (i *Inferrer) Stats() Stats { return Stats{} }

// Pod is Linux-only.
func (i *Inferrer) Pod(uint64, uint16) (*Pod, error) { return nil, ErrNotSupported }

// Pod is inference for one pod.
type Pod struct{}

func (p *Pod) Close() error                                 { return nil }
func (p *Pod) Sending(net.Conn, spans.Context)              {}
func (p *Pod) Parent(net.Conn, int64) (spans.Context, bool) { return spans.Context{}, false }
