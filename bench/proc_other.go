//go:build !linux

package bench

import "errors"

// CPUSeconds needs Linux /proc.
func CPUSeconds(pid int) (float64, error) { return 0, errors.ErrUnsupported }

// PeakRSSMB needs Linux /proc.
func PeakRSSMB(pid int) (float64, error) { return 0, errors.ErrUnsupported }

// ResetPeakRSS needs Linux /proc.
func ResetPeakRSS(pid int) error { return errors.ErrUnsupported }

// WithDescendants needs Linux /proc.
func WithDescendants(pid int) []int { return []int{pid} }

// Status is what /proc/<pid>/status says about a process (Linux only).
type Status struct {
	PeakRSSMB, AnonMB, FileMB float64
	Threads                   int
}

// ReadStatus needs Linux /proc.
func ReadStatus(pid int) (Status, error) { return Status{}, errors.ErrUnsupported }

// LoadAvg1 needs Linux /proc.
func LoadAvg1() (float64, error) { return 0, errors.ErrUnsupported }
