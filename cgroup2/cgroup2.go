// Package cgroup2 finds the cgroup v2 hierarchy and checks that a directory is in it.
//
// Nodes mount cgroup2 at /sys/fs/cgroup (unified) or, on hybrid hosts, at
// /sys/fs/cgroup/unified; hoptrace reads the mount table instead of guessing.
package cgroup2

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrNotMounted means no cgroup2 filesystem is mounted on this host.
var ErrNotMounted = errors.New("cgroup2 is not mounted")

// ErrNotV2 means a path is not a directory of the cgroup v2 hierarchy.
var ErrNotV2 = errors.New("not a cgroup v2 directory")

// Mountpoint returns where cgroup2 is mounted, read from /proc/self/mountinfo.
func Mountpoint() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return mountpointFrom(f)
}

// mountpointFrom parses mountinfo lines: "id parent maj:min root mountpoint opts - fstype source superopts".
func mountpointFrom(r io.Reader) (string, error) {
	mounts, err := mountsFrom(r)
	if err != nil {
		return "", err
	}
	best := ""
	for _, m := range mounts {
		// Several cgroup2 mounts can exist (containers bind-mount subtrees): only a
		// mount of the hierarchy's root ("/") shows every pod's cgroup.
		if m.root == "/" && (best == "" || len(m.point) < len(best)) {
			best = m.point
		}
	}
	if best == "" {
		return "", ErrNotMounted
	}
	return best, nil
}

// mount is a cgroup2 mount: the directory of the hierarchy it shows (as the
// reader's cgroup namespace names it) and where.
type mount struct{ root, point string }

// mountsFrom lists the cgroup2 mounts of mountinfo lines.
func mountsFrom(r io.Reader) ([]mount, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	var mounts []mount
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		mounts = append(mounts, mount{root: unescapeMountinfo(fields[3]), point: unescapeMountinfo(fields[4])})
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return mounts, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) of mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
