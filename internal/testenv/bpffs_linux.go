package testenv

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TempBPFFS mounts a private bpffs for one test and returns a pin dir inside it,
// so tests never share or leak pins; it is unmounted in t.Cleanup.
func TempBPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs: %v", err)
		}
	})
	return filepath.Join(dir, "hoptrace")
}
