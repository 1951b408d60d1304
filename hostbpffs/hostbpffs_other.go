//go:build !linux

package hostbpffs

import "errors"

// Ensure is Linux only.
func Ensure(mountNS, path string) (Report, error) {
	return Report{}, errors.New("bpffs needs Linux")
}
