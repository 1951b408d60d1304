package pods

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrPodNotRunning means a pod of this node has no cgroup or no live process
// here (yet): it is still starting, or already gone. It is a Problem for one
// snapshot, not an error; the pod is resolved again on the next one.
var ErrPodNotRunning = errors.New("pod not running on this node yet")

// resolver finds a pod's cgroup v2 directory from its UID and its network
// namespace from a process in that cgroup. It is used by one goroutine only.
type resolver struct {
	cgroupRoot string
	procRoot   string

	// rescanEvery limits how often the cgroup tree is walked again to find new
	// kubepods directories; pods of known ones are found without a walk.
	rescanEvery time.Duration
	now         func() time.Time

	roots   []string          // kubepods directories under cgroupRoot
	scanned time.Time         // when roots was last filled
	dirs    map[string]string // pod UID -> cgroup dir, as found before
}

func newResolver(cgroupRoot, procRoot string) *resolver {
	return &resolver{
		cgroupRoot:  cgroupRoot,
		procRoot:    procRoot,
		rescanEvery: 10 * time.Second,
		now:         time.Now,
		dirs:        map[string]string{},
	}
}

// resolve returns the pod's cgroup directory and a netns path under procRoot.
func (r *resolver) resolve(uid string) (cgroupDir, netnsPath string, err error) {
	dir, err := r.cgroupDir(uid)
	if err != nil {
		return "", "", err
	}
	netns, err := r.netns(dir)
	if err != nil {
		return "", "", err
	}
	return dir, netns, nil
}

func (r *resolver) cgroupDir(uid string) (string, error) {
	if !validUID(uid) {
		return "", fmt.Errorf("%w: pod UID %q cannot name a cgroup", ErrPodNotRunning, uid)
	}
	if d, ok := r.dirs[uid]; ok {
		if isDir(d) {
			return d, nil
		}
		delete(r.dirs, uid) // the pod was recreated or is gone
	}
	d := r.lookup(uid)
	if d == "" && r.now().Sub(r.scanned) >= r.rescanEvery {
		if err := r.scan(); err != nil {
			return "", err
		}
		d = r.lookup(uid)
	}
	if d == "" {
		return "", fmt.Errorf("%w: no cgroup for pod UID %s under %s", ErrPodNotRunning, uid, r.cgroupRoot)
	}
	r.dirs[uid] = d
	return d, nil
}

// forget drops cached directories of pods that are no longer on the node.
func (r *resolver) forget(keep map[string]bool) {
	for uid := range r.dirs {
		if !keep[uid] {
			delete(r.dirs, uid)
		}
	}
}

func (r *resolver) lookup(uid string) string {
	for _, root := range r.roots {
		for _, c := range podDirCandidates(root, uid) {
			if isDir(c) {
				return c
			}
		}
	}
	return ""
}

// maxScanDepth bounds the walk for kubepods directories. The kubelet puts them
// at the top (kubepods, kubepods.slice) or under its own --cgroup-root or a
// container's (kind: kubelet.slice/kubelet-kubepods.slice), never deep.
const maxScanDepth = 6

// scan walks the cgroup tree for kubepods directories. It does not descend into
// them: the pods and containers inside are many and are found by name instead.
func (r *resolver) scan() error {
	var roots []string
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if dir == r.cgroupRoot {
				return fmt.Errorf("read cgroup root: %w", err)
			}
			return nil // removed while walking
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if isKubepodsDir(e.Name()) {
				roots = append(roots, p)
				continue
			}
			if depth < maxScanDepth {
				if err := walk(p, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(r.cgroupRoot, 1); err != nil {
		return err
	}
	r.roots, r.scanned = roots, r.now()
	return nil
}

// isKubepodsDir recognises the kubelet's pod parent cgroup with the cgroupfs
// driver ("kubepods") and the systemd one ("kubepods.slice", or
// "<parent>-kubepods.slice" under a --cgroup-root slice).
func isKubepodsDir(name string) bool {
	return name == "kubepods" || name == "kubepods.slice" || strings.HasSuffix(name, "-kubepods.slice")
}

// podDirCandidates lists where the kubelet puts a pod's cgroup under a kubepods
// directory: guaranteed pods directly, burstable and best-effort ones under a
// QoS directory. The systemd driver names every slice after its parent, with the
// UID's dashes turned into underscores (a dash means nesting to systemd).
func podDirCandidates(root, uid string) []string {
	qos := []string{"burstable", "besteffort"}
	if prefix, ok := strings.CutSuffix(filepath.Base(root), ".slice"); ok {
		u := strings.ReplaceAll(uid, "-", "_")
		c := []string{filepath.Join(root, prefix+"-pod"+u+".slice")}
		for _, q := range qos {
			c = append(c, filepath.Join(root, prefix+"-"+q+".slice", prefix+"-"+q+"-pod"+u+".slice"))
		}
		return c
	}
	c := []string{filepath.Join(root, "pod"+uid)}
	for _, q := range qos {
		c = append(c, filepath.Join(root, q, "pod"+uid))
	}
	return c
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// validUID keeps a UID from naming a path outside the kubepods directories; the
// API server assigns UUIDs, so anything else is not a pod the kubelet runs.
func validUID(uid string) bool {
	if uid == "" {
		return false
	}
	for _, c := range uid {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}
