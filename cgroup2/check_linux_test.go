package cgroup2

import (
	"errors"
	"testing"
)

func TestCheck(t *testing.T) {
	mp, err := Mountpoint()
	if errors.Is(err, ErrNotMounted) {
		t.Skip("no cgroup2 on this host")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(mp); err != nil {
		t.Errorf("Check(%s) = %v, want nil", mp, err)
	}
	if err := Check(t.TempDir()); !errors.Is(err, ErrNotV2) {
		t.Errorf("Check(tempdir) = %v, want ErrNotV2", err)
	}
}
