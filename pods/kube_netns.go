package pods

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// maxContainerDepth bounds how deep under a pod's cgroup processes are looked
// for: containers are its children, and some runtimes nest one level more.
const maxContainerDepth = 3

// netns returns <procRoot>/<pid>/ns/net for a live process of the pod's cgroup.
// Every container of a pod shares its netns, so any process will do; the lowest
// pid is taken because it is usually the sandbox (pause) process, which lives as
// long as the pod, and because the choice then stays the same between snapshots.
func (r *resolver) netns(cgroupDir string) (string, error) {
	pids := cgroupPIDs(cgroupDir, maxContainerDepth)
	slices.Sort(pids)
	var denied error
	for _, pid := range pids {
		p := filepath.Join(r.procRoot, strconv.Itoa(pid), "ns", "net")
		// Readlink, not Stat: it fails for zombies and exited processes, whose
		// ns links are gone, without opening the namespace.
		_, err := os.Readlink(p)
		if err == nil {
			return p, nil
		}
		if denied == nil && errors.Is(err, fs.ErrPermission) {
			denied = err
		}
	}
	if denied != nil {
		// Live, but not the agent's to open: not a pod that is still starting.
		return "", fmt.Errorf("pod's network namespace: %w (the agent needs CAP_SYS_PTRACE to open other processes' namespaces)", denied)
	}
	return "", fmt.Errorf("%w: no live process in %s", ErrPodNotRunning, cgroupDir)
}

// cgroupPIDs reads cgroup.procs of dir and of its descendants up to depth levels.
// Unreadable files are skipped: cgroups come and go as containers restart.
func cgroupPIDs(dir string, depth int) []int {
	pids := readProcs(filepath.Join(dir, "cgroup.procs"))
	if depth == 0 {
		return pids
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return pids
	}
	for _, e := range entries {
		if e.IsDir() {
			pids = append(pids, cgroupPIDs(filepath.Join(dir, e.Name()), depth-1)...)
		}
	}
	return pids
}

func readProcs(path string) []int {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var pids []int
	s := bufio.NewScanner(f)
	for s.Scan() {
		if pid, err := strconv.Atoi(s.Text()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}
