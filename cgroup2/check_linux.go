package cgroup2

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Check returns nil if dir is a directory on a cgroup2 filesystem, and an error
// wrapping ErrNotV2 (or the stat error) otherwise.
func Check(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("cgroup %s: %w (filesystem magic %#x)", dir, ErrNotV2, st.Type)
	}
	return nil
}
