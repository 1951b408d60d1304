package hostbpffs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/internal/testenv"
)

// scratchMountNS starts a process in a mount namespace of its own, all private
// (Go remounts / private when it unshares CLONE_NEWNS), to play the node's:
// nothing the tests do there is seen by the machine. It is killed in cleanup
// (no Pdeathsig: that fires when the forking thread ends, and Ensure ends the
// threads it locks).
func scratchMountNS(t *testing.T) (nsPath string, pid int) {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid), cmd.Process.Pid
}

// inNS runs a command in the scratch namespace (nsenter, util-linux): the
// tests' independent view of it.
func inNS(t *testing.T, pid int, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(pid), "-m", "--"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// mountOf reads a mount point's type and propagation in the namespace of pid.
func mountOf(t *testing.T, pid int, path string) mount {
	t.Helper()
	m, err := findMount(fmt.Sprintf("/proc/%d/mountinfo", pid), path)
	if err != nil {
		t.Fatalf("mount at %s: %v", path, err)
	}
	return m
}

func isBPFFS(t *testing.T, path string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.BPF_FS_MAGIC
}

// Shown: where the node has no bpffs, Ensure mounts one in the node's mount
// namespace (not the caller's) and makes it shared; a second run changes
// nothing.
func TestEnsureMountsAndShares(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	ns, pid := scratchMountNS(t)

	r, err := Ensure(ns, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Mounted || !r.MadeShared || r.Propagation != "shared" {
		t.Errorf("first run: %+v, want mounted, made shared, shared", r)
	}
	if m := mountOf(t, pid, dir); m.fstype != "bpf" || !m.shared {
		t.Errorf("in the node's namespace: %+v, want a shared bpf mount", m)
	}
	if isBPFFS(t, dir) {
		t.Error("the bpffs was mounted in the caller's mount namespace too")
	}

	r, err = Ensure(ns, dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Mounted || r.MadeShared || r.Propagation != "shared" {
		t.Errorf("second run: %+v, want nothing done, shared", r)
	}
	if got := r.String(); got != "bpffs at "+dir+": already mounted (propagation shared)" {
		t.Errorf("report %q", got)
	}
}

// Shown: an existing private bpffs (the state in which the container runtime
// refuses HostToContainer) is made shared, not mounted over; a slave one is
// left as it is (the runtime accepts it).
func TestEnsureSharesExistingPrivateMountOnly(t *testing.T) {
	testenv.RequirePrivileged(t)
	priv, master, slave := t.TempDir(), t.TempDir(), t.TempDir()
	ns, pid := scratchMountNS(t)
	inNS(t, pid, "mount", "-t", "bpf", "bpf", priv)
	inNS(t, pid, "mkdir", filepath.Join(priv, "pins")) // what a mount over it would hide

	r, err := Ensure(ns, priv)
	if err != nil {
		t.Fatal(err)
	}
	if r.Mounted || !r.MadeShared || r.Propagation != "shared" {
		t.Errorf("private bpffs: %+v, want made shared only", r)
	}
	// (A fresh bpffs may also hold the kernel's preloaded maps.debug and progs.debug.)
	if got := inNS(t, pid, "ls", priv); !slices.Contains(strings.Fields(got), "pins") {
		t.Errorf("the existing bpffs holds %q after Ensure, want its pins dir", got)
	}

	// A slave: the bind of a shared bpffs, made a slave of it.
	inNS(t, pid, "mount", "-t", "bpf", "bpf", master)
	inNS(t, pid, "mount", "--make-shared", master)
	inNS(t, pid, "mount", "--bind", master, slave)
	inNS(t, pid, "mount", "--make-slave", slave)
	r, err = Ensure(ns, slave)
	if err != nil {
		t.Fatal(err)
	}
	if r.Mounted || r.MadeShared || r.Propagation != "slave" {
		t.Errorf("slave bpffs: %+v, want left as it is", r)
	}
	if m := mountOf(t, pid, slave); m.shared || !m.slave {
		t.Errorf("slave bpffs afterwards: %+v", m)
	}
}

// Shown: bad input gets a clear error and changes nothing.
func TestEnsureRefuses(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	ns, pid := scratchMountNS(t)
	inNS(t, pid, "mount", "-t", "bpf", "bpf", dir)
	inNS(t, pid, "mkdir", filepath.Join(dir, "sub"))

	// Inside a bpffs, not its mount point: making it shared would need the
	// parent's propagation changed.
	if _, err := Ensure(ns, filepath.Join(dir, "sub")); !errors.Is(err, ErrNotMountPoint) {
		t.Errorf("path inside a bpffs: %v, want ErrNotMountPoint", err)
	}
	if m := mountOf(t, pid, dir); m.shared {
		t.Error("the parent bpffs was made shared")
	}
	if _, err := Ensure("/proc/self/ns/net", dir); !errors.Is(err, ErrNotMountNamespace) {
		t.Errorf("a network namespace: %v, want ErrNotMountNamespace", err)
	}
	if _, err := Ensure(ns, filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing path: %v, want ErrNotExist", err)
	}
	if _, err := Ensure(ns, "sys/fs/bpf"); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Errorf("a relative path: %v", err)
	}
	if _, err := Ensure("/proc/0/ns/mnt", dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no such process: %v, want ErrNotExist", err)
	}
}
