package redirect

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/netns"
)

// openNetns opens a network namespace file and checks that it is one.
func openNetns(path string) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("netns %s: %w", path, ErrNetnsGone)
	}
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	// A netns file is an nsfs inode (or proc, when opened via /proc/<pid>/ns/net).
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		f.Close()
		return nil, fmt.Errorf("netns %s: %w (filesystem magic %#x)", path, ErrNotNetns, st.Type)
	}
	nstype, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || nstype != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("netns %s: %w", path, ErrNotNetns)
	}
	return f, nil
}

// netnsCookie returns the cookie of the netns a socket belongs to; it is what
// bpf_get_netns_cookie returns inside the BPF programs.
func netnsCookie(fd int) (uint64, error) { return netns.SocketCookie(fd) }
