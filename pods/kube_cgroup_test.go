package pods

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeNode is a cgroup tree and a procfs made of plain files, for resolver tests
// that run anywhere without privileges.
type fakeNode struct {
	t                    *testing.T
	cgroupRoot, procRoot string
}

func newFakeNode(t *testing.T) *fakeNode {
	dir := t.TempDir()
	n := &fakeNode{t: t, cgroupRoot: filepath.Join(dir, "cgroup"), procRoot: filepath.Join(dir, "proc")}
	n.mkdir(n.cgroupRoot)
	n.mkdir(n.procRoot)
	return n
}

func (n *fakeNode) mkdir(p string) {
	n.t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		n.t.Fatal(err)
	}
}

// cgroup creates rel under the cgroup root with the given pids in cgroup.procs.
func (n *fakeNode) cgroup(rel string, pids ...int) string {
	n.t.Helper()
	dir := filepath.Join(n.cgroupRoot, rel)
	n.mkdir(dir)
	var b strings.Builder
	for _, p := range pids {
		b.WriteString(strconv.Itoa(p) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(b.String()), 0o644); err != nil {
		n.t.Fatal(err)
	}
	return dir
}

// process makes <proc>/<pid>/ns/net, a link like the kernel's ("net:[inode]").
func (n *fakeNode) process(pid int) string {
	n.t.Helper()
	dir := filepath.Join(n.procRoot, strconv.Itoa(pid), "ns")
	n.mkdir(dir)
	link := filepath.Join(dir, "net")
	if err := os.Symlink("net:[4026532"+strconv.Itoa(pid)+"]", link); err != nil {
		n.t.Fatal(err)
	}
	return link
}

func TestResolverLayouts(t *testing.T) {
	const uid = "6f1d2c3b-aaaa-4bbb-8ccc-0123456789ab"
	const uidU = "6f1d2c3b_aaaa_4bbb_8ccc_0123456789ab"
	for _, tc := range []struct {
		name, podDir string
	}{
		{"cgroupfs guaranteed", "kubepods/pod" + uid},
		{"cgroupfs burstable", "kubepods/burstable/pod" + uid},
		{"cgroupfs besteffort", "kubepods/besteffort/pod" + uid},
		{"cgroupfs under a cgroup root", "kubelet/kubepods/besteffort/pod" + uid},
		{"systemd guaranteed", "kubepods.slice/kubepods-pod" + uidU + ".slice"},
		{"systemd burstable", "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice"},
		{"systemd besteffort", "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice"},
		{"systemd under kubelet.slice (kind)", "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice"},
		{"nested in a container's cgroup", "system.slice/docker-abc.scope/kubepods/burstable/pod" + uid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(t)
			// Decoys: another pod, and a name that only contains the UID.
			n.cgroup("kubepods/burstable/pod11111111-2222-3333-4444-555555555555/c1", 7)
			n.cgroup("system.slice/x-pod"+uid+".service", 8)
			n.process(7)
			n.process(8)
			dir := n.cgroup(tc.podDir)
			n.cgroup(filepath.Join(tc.podDir, "pause"), 42)
			n.cgroup(filepath.Join(tc.podDir, "app"), 43)
			want := n.process(42)
			n.process(43)

			r := newResolver(n.cgroupRoot, n.procRoot)
			gotDir, gotNetns, err := r.resolve(uid)
			if err != nil {
				t.Fatal(err)
			}
			if gotDir != dir || gotNetns != want {
				t.Errorf("resolve = %s, %s; want %s, %s", gotDir, gotNetns, dir, want)
			}
		})
	}
}

func TestResolverNetns(t *testing.T) {
	const uid = "0a0a0a0a-0000-4000-8000-000000000001"
	for _, tc := range []struct {
		name    string
		procs   map[string][]int // cgroup dir under the pod -> pids
		live    []int            // pids with an ns link
		wantPID int              // 0: ErrPodNotRunning
	}{
		{name: "lowest live pid wins", procs: map[string][]int{"app": {300}, "pause": {120}}, live: []int{120, 300}, wantPID: 120},
		{name: "exited process skipped", procs: map[string][]int{"app": {300}, "pause": {120}}, live: []int{300}, wantPID: 300},
		{name: "pid in the pod dir itself", procs: map[string][]int{".": {77}}, live: []int{77}, wantPID: 77},
		{name: "nested container cgroup", procs: map[string][]int{"c/init": {55}}, live: []int{55}, wantPID: 55},
		{name: "no process yet", procs: map[string][]int{"app": nil}},
		{name: "only dead processes", procs: map[string][]int{"app": {9}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(t)
			pod := "kubepods/besteffort/pod" + uid
			n.cgroup(pod)
			for sub, pids := range tc.procs {
				n.cgroup(filepath.Join(pod, sub), pids...)
			}
			for _, pid := range tc.live {
				n.process(pid)
			}
			r := newResolver(n.cgroupRoot, n.procRoot)
			_, netns, err := r.resolve(uid)
			if tc.wantPID == 0 {
				if !errors.Is(err, ErrPodNotRunning) {
					t.Fatalf("resolve = %q, %v; want ErrPodNotRunning", netns, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(n.procRoot, strconv.Itoa(tc.wantPID), "ns", "net"); netns != want {
				t.Errorf("netns = %s, want %s", netns, want)
			}
		})
	}
}

func TestResolverCachesAndRescans(t *testing.T) {
	const uidA = "aaaaaaaa-0000-4000-8000-000000000001"
	const uidB = "bbbbbbbb-0000-4000-8000-000000000002"
	const uidC = "cccccccc-0000-4000-8000-000000000003"
	n := newFakeNode(t)
	n.process(10)
	n.process(20)
	n.process(30)
	n.cgroup("kubepods/besteffort/pod"+uidA+"/c", 10)

	now := time.Unix(1000, 0)
	r := newResolver(n.cgroupRoot, n.procRoot)
	r.now = func() time.Time { return now }

	if _, _, err := r.resolve(uidA); err != nil {
		t.Fatal(err)
	}
	// A pod still starting: not there yet, reported as such.
	if _, _, err := r.resolve(uidB); !errors.Is(err, ErrPodNotRunning) {
		t.Fatalf("missing pod: %v, want ErrPodNotRunning", err)
	}
	// Its cgroup appears under a known kubepods dir: found without a rescan.
	n.cgroup("kubepods/burstable/pod"+uidB+"/c", 20)
	if _, _, err := r.resolve(uidB); err != nil {
		t.Fatalf("pod under a known kubepods dir: %v", err)
	}
	// A new kubepods dir (a kubelet with another cgroup root) is found only after
	// rescanEvery, so pods that stay missing do not walk the tree every time.
	n.cgroup("other/kubepods/pod"+uidC+"/c", 30)
	if _, _, err := r.resolve(uidC); !errors.Is(err, ErrPodNotRunning) {
		t.Fatalf("before rescan: %v, want ErrPodNotRunning", err)
	}
	now = now.Add(r.rescanEvery)
	if _, _, err := r.resolve(uidC); err != nil {
		t.Fatalf("after rescan: %v", err)
	}
	// The pod goes away: the cached dir is checked, not trusted.
	if err := os.RemoveAll(filepath.Join(n.cgroupRoot, "kubepods/besteffort/pod"+uidA)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.resolve(uidA); !errors.Is(err, ErrPodNotRunning) {
		t.Fatalf("removed pod: %v, want ErrPodNotRunning", err)
	}
	r.forget(map[string]bool{uidC: true})
	if len(r.dirs) != 1 || r.dirs[uidC] == "" {
		t.Errorf("cache after forget = %v, want only %s", r.dirs, uidC)
	}
}

func TestResolverRejectsPathUIDs(t *testing.T) {
	n := newFakeNode(t)
	n.cgroup("kubepods")
	r := newResolver(n.cgroupRoot, n.procRoot)
	for _, uid := range []string{"", "../../etc", "a/b", "x y"} {
		if _, _, err := r.resolve(uid); !errors.Is(err, ErrPodNotRunning) {
			t.Errorf("resolve(%q) = %v, want ErrPodNotRunning", uid, err)
		}
	}
}
