package hostbpffs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Ensure enters the mount namespace mountNS (e.g. /proc/PID/ns/mnt of a host
// process) and makes sure a bpffs is mounted at path there and that the mount
// is shared or slave: it mounts one if there is none and makes a private one
// shared. Nothing else of the namespace is touched.
//
// It needs CAP_SYS_ADMIN (setns, mount), CAP_SYS_CHROOT (setns into a mount
// namespace) and, to open the namespace of a process with capabilities this
// one lacks, CAP_SYS_PTRACE.
func Ensure(mountNS, path string) (Report, error) {
	if !filepath.IsAbs(path) {
		return Report{}, fmt.Errorf("bpffs path %q: not absolute", path)
	}
	path = filepath.Clean(path)
	ns, err := os.Open(mountNS)
	if err != nil {
		return Report{}, fmt.Errorf("open mount namespace: %w", err)
	}
	defer ns.Close()
	if t, err := unix.IoctlRetInt(int(ns.Fd()), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNS {
		return Report{}, fmt.Errorf("%s: %w", mountNS, ErrNotMountNamespace)
	}
	type result struct {
		r   Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread is never unlocked: the runtime ends it with this
		// goroutine, so no other goroutine ever runs in mountNS.
		runtime.LockOSThread()
		// Go's threads share one fs_struct (CLONE_FS), and setns into a mount
		// namespace refuses a shared one: give this thread its own first.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- result{err: fmt.Errorf("unshare fs: %w", err)}
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			done <- result{err: fmt.Errorf("enter mount namespace %s: %w", mountNS, err)}
			return
		}
		r, err := ensure(path)
		done <- result{r, err}
	}()
	res := <-done
	return res.r, res.err
}

// ensure does Ensure's work in the calling thread's mount namespace.
func ensure(path string) (Report, error) {
	r := Report{Path: path}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return r, fmt.Errorf("bpffs path %s: %w", path, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
			return r, fmt.Errorf("mount bpffs at %s: %w", path, err)
		}
		r.Mounted = true
	}
	// /proc/thread-self: this thread's mount namespace, not the process's.
	const mountinfo = "/proc/thread-self/mountinfo"
	m, err := findMount(mountinfo, path)
	if err != nil {
		return r, err
	}
	if !m.shared && !m.slave {
		if err := unix.Mount("", path, "", unix.MS_SHARED, ""); err != nil {
			return r, fmt.Errorf("make %s shared: %w", path, err)
		}
		r.MadeShared = true
		if m, err = findMount(mountinfo, path); err != nil {
			return r, err
		}
	}
	r.Propagation = m.propagation()
	return r, nil
}

type mount struct {
	fstype        string
	shared, slave bool
}

func (m mount) propagation() string {
	switch {
	case m.shared && m.slave:
		return "shared,slave"
	case m.shared:
		return "shared"
	case m.slave:
		return "slave"
	}
	return "private"
}

// findMount returns the topmost mount at mount point path in a mountinfo file.
func findMount(mountinfo, path string) (mount, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return mount{}, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var found *mount
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(s.Text())
		if len(fields) < 10 || unescape(fields[4]) != path {
			continue
		}
		m := mount{}
		i := 6
		for ; i < len(fields) && fields[i] != "-"; i++ {
			m.shared = m.shared || strings.HasPrefix(fields[i], "shared:")
			m.slave = m.slave || strings.HasPrefix(fields[i], "master:")
		}
		if i+1 < len(fields) {
			m.fstype = fields[i+1]
		}
		found = &m // later lines are mounted on top of earlier ones
	}
	if err := s.Err(); err != nil {
		return mount{}, fmt.Errorf("read mount table: %w", err)
	}
	if found == nil || found.fstype != "bpf" {
		return mount{}, fmt.Errorf("bpffs path %s: %w (the bpffs is mounted above it; pass its mount point)", path, ErrNotMountPoint)
	}
	return *found, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space, ...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
