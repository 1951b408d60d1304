package redirect

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const bpffsRoot = "/sys/fs/bpf"

// ensurePinDir makes dir on a bpffs. On hosts that boot without bpffs mounted (as
// some VMs do) it mounts one at /sys/fs/bpf, as Cilium's agent does; elsewhere it
// refuses, because pins on any other filesystem are impossible.
func ensurePinDir(dir string) error {
	parent := dir
	for {
		if _, err := os.Stat(parent); err == nil {
			break
		}
		next := filepath.Dir(parent)
		if next == parent {
			break
		}
		parent = next
	}
	onBPFFS, err := isBPFFS(parent)
	if err != nil {
		return err
	}
	if !onBPFFS {
		clean := filepath.Clean(dir)
		if clean != bpffsRoot && !strings.HasPrefix(clean, bpffsRoot+"/") {
			return fmt.Errorf("pin dir %s: %s is not on a bpf filesystem (mount one with: mount -t bpf bpf %s)", dir, parent, parent)
		}
		if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", bpffsRoot, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin dir: %w", err)
	}
	return nil
}

func isBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}
