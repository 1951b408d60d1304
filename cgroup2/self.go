package cgroup2

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrRootCgroup means the process runs in the root of the cgroup hierarchy,
// where a program attached to "its" cgroup would see every process of the host.
var ErrRootCgroup = errors.New("the process is in the root cgroup")

// Self returns the cgroup v2 directory of this process as mounted here. In a
// container with a cgroup namespace of its own (Kubernetes' default on cgroup
// v2) that is the container's cgroup, shown at the namespace's mount; a host
// mount of the whole hierarchy (the agent's /host/cgroup2) names it as well.
// It returns ErrRootCgroup for a process in the hierarchy's root.
func Self() (string, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	dir, err := selfFrom(string(cg), f)
	if err != nil {
		return "", err
	}
	// Every cgroup but the hierarchy's root has a cgroup.type; a namespace's
	// root is not the hierarchy's.
	if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s: %w", dir, ErrRootCgroup)
	}
	return dir, nil
}

// selfFrom finds the directory of the cgroup /proc/self/cgroup names ("0::/a/b")
// under a cgroup2 mount that shows it: one whose root is that path or above it.
func selfFrom(procCgroup string, mountinfo io.Reader) (string, error) {
	var own string
	found := false
	for _, line := range strings.Split(procCgroup, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			own, found = path.Clean(p), true
			break
		}
	}
	if !found {
		return "", fmt.Errorf("own cgroup: %w", ErrNotMounted)
	}
	mounts, err := mountsFrom(mountinfo)
	if err != nil {
		return "", err
	}
	best, bestRoot := "", ""
	for _, m := range mounts {
		root := path.Clean(m.root)
		rel, ok := strings.CutPrefix(own, root)
		if !ok || root != "/" && rel != "" && rel[0] != '/' {
			continue // not above this process's cgroup (a sibling, or "/.." outside the namespace)
		}
		// The mount closest to the cgroup: fewest components to add.
		if best == "" || len(root) > len(bestRoot) {
			best, bestRoot = filepath.Join(m.point, rel), root
		}
	}
	if best == "" {
		return "", fmt.Errorf("no cgroup2 mount shows %s: %w", own, ErrNotMounted)
	}
	return best, nil
}
