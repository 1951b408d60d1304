package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hoptrace/hoptrace/cgroup2"
)

// InOwnCgroup moves this test process into a throw-away cgroup, as the agent
// runs in a container's, and returns its directory; cleanup moves the process
// back and removes it. Tests that use it must not run in parallel with others
// of their package that care about their cgroup.
func InOwnCgroup(t testing.TB) string {
	t.Helper()
	RequirePrivileged(t)
	mnt, err := cgroup2.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	before, err := cgroup2.Self()
	switch {
	case errors.Is(err, cgroup2.ErrRootCgroup):
		before = mnt
	case err != nil:
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(mnt, "hoptrace-test-")
	if err != nil {
		t.Fatal(err)
	}
	move := func(to string) error {
		return os.WriteFile(filepath.Join(to, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
	}
	if err := move(dir); err != nil {
		os.Remove(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := move(before); err != nil {
			t.Errorf("move back to %s: %v", before, err)
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	return dir
}
