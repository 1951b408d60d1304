package pods

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/cgroup2"
	"github.com/hoptrace/hoptrace/internal/kubetest"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// testNode plays the kubelet of one node for tests against a real API server:
// it creates pods bound to the node in a namespace of its own, and "runs" them
// as the kubelet would, as a process in a cgroup named after the pod's UID
// (cgroupfs layout) with a network namespace of its own.
type testNode struct {
	t        *testing.T
	name     string
	ns       string
	admin    kubernetes.Interface
	kubepods string // <cgroup2>/hoptrace-kubetest-<rand>/kubepods
}

func randSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newTestNode(t *testing.T, admin kubernetes.Interface) *testNode {
	t.Helper()
	cgRoot, err := cgroup2.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	id := randSuffix()
	n := &testNode{t: t, name: "node-" + id, ns: "kt-" + id, admin: admin}
	base := filepath.Join(cgRoot, "hoptrace-kubetest-"+id)
	n.kubepods = filepath.Join(base, "kubepods")
	if err := os.MkdirAll(filepath.Join(n.kubepods, "besteffort"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Registered before any pod's cleanup, so it runs after all of them, when
	// every process is gone and the cgroups can be removed.
	t.Cleanup(func() {
		if err := removeCgroupTree(base); err != nil {
			t.Errorf("remove test cgroups: %v", err)
		}
	})
	_, err = admin.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n.ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// createPod creates a pod bound to this node (or to node, if given) through the
// API; no scheduler or kubelet exists, so it stays as created.
func (n *testNode) createPod(name string, mutate func(*corev1.Pod)) *corev1.Pod {
	n.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.ns},
		Spec: corev1.PodSpec{
			NodeName:   n.name,
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}
	if mutate != nil {
		mutate(p)
	}
	created, err := n.admin.CoreV1().Pods(n.ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		n.t.Fatalf("create pod %s: %v", name, err)
	}
	return created
}

// setIPs writes status.podIPs (and phase Running), as the kubelet would.
func (n *testNode) setIPs(p *corev1.Pod, ips ...string) {
	n.t.Helper()
	p = p.DeepCopy()
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ips[0]
	p.Status.PodIPs = nil
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if _, err := n.admin.CoreV1().Pods(n.ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		n.t.Fatalf("update status of %s: %v", p.Name, err)
	}
}

// runPod starts the pod's "container": a sleep in
// kubepods/besteffort/pod<uid>/app and in a new netns. It returns the pod's
// cgroup directory and the sleep's pid.
func (n *testNode) runPod(p *corev1.Pod) (podDir string, pid int) {
	n.t.Helper()
	podDir = filepath.Join(n.kubepods, "besteffort", "pod"+string(p.UID))
	container := filepath.Join(podDir, "app")
	if err := os.MkdirAll(container, 0o755); err != nil {
		n.t.Fatal(err)
	}
	cg, err := os.Open(container)
	if err != nil {
		n.t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command("sleep", "3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// clone3 puts the child in the cgroup and a new netns from its first
		// instruction; a killed test binary takes it along.
		UseCgroupFD: true, CgroupFD: int(cg.Fd()),
		Cloneflags: syscall.CLONE_NEWNET,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("start pod %s: %v", p.Name, err)
	}
	n.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return podDir, cmd.Process.Pid
}

func (n *testNode) deletePod(name string) {
	n.t.Helper()
	// Grace 0: no kubelet would ever confirm a graceful deletion.
	zero := int64(0)
	if err := n.admin.CoreV1().Pods(n.ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		n.t.Fatalf("delete pod %s: %v", name, err)
	}
}

// removeCgroupTree removes dir and its descendants, deepest first: a cgroup
// directory is removed with rmdir once it has no children and no processes.
func removeCgroupTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	return nil
}

// runSource runs a KubeSource for this node as cfg's identity until the test
// ends, and fails the test if Run returns an error.
func (n *testNode) runSource(cfg *rest.Config, tune func(*KubeConfig)) <-chan Snapshot {
	n.t.Helper()
	kc := KubeConfig{REST: cfg, NodeName: n.name, Resync: 2 * time.Second}
	if tune != nil {
		tune(&kc)
	}
	src, err := NewKubeSource(kc)
	if err != nil {
		n.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Snapshot)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	n.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				n.t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			n.t.Error("Run did not return after its context ended")
		}
	})
	return out
}

// waitSnapshot reads snapshots until one satisfies ok.
func waitSnapshot(t *testing.T, ch <-chan Snapshot, what string, ok func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.After(30 * time.Second)
	var last Snapshot
	for {
		select {
		case s := <-ch:
			if ok(s) {
				return s
			}
			last = s
		case <-deadline:
			t.Fatalf("no snapshot with %s in 30s; last: %s", what, describe(last))
		}
	}
}

func describe(s Snapshot) string {
	var b strings.Builder
	b.WriteString("pods [")
	for i, p := range s.Pods {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(p.Namespace + "/" + p.Name)
	}
	b.WriteString("] problems [")
	for i, e := range s.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	b.WriteString("]")
	return b.String()
}

func podNames(s Snapshot) string {
	var names []string
	for _, p := range s.Pods {
		names = append(names, p.Name)
	}
	return strings.Join(names, ",")
}

func findPod(s Snapshot, name string) (Pod, bool) {
	for _, p := range s.Pods {
		if p.Name == name {
			return p, true
		}
	}
	return Pod{}, false
}

// applyAgentRBAC creates deploy/rbac.yaml's objects (as the deploy manifests
// would) and returns a client configuration for the agent's service account.
func applyAgentRBAC(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) *rest.Config {
	t.Helper()
	ctx := context.Background()
	data, err := os.ReadFile("../deploy/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var sa *corev1.ServiceAccount
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("deploy/rbac.yaml: %v", err)
		}
		switch head.Kind {
		case "ServiceAccount":
			sa = &corev1.ServiceAccount{}
			mustUnmarshal(t, doc, sa)
			_, err = admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sa.Namespace}}, metav1.CreateOptions{})
			if err == nil {
				_, err = admin.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{})
			}
		case "ClusterRole":
			var o rbacv1.ClusterRole
			mustUnmarshal(t, doc, &o)
			_, err = admin.RbacV1().ClusterRoles().Create(ctx, &o, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			mustUnmarshal(t, doc, &o)
			_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})
		default:
			t.Fatalf("deploy/rbac.yaml: unexpected kind %q", head.Kind)
		}
		if err != nil {
			t.Fatalf("apply %s: %v", head.Kind, err)
		}
	}
	if sa == nil {
		t.Fatal("deploy/rbac.yaml has no ServiceAccount")
	}
	// What the API server's token authenticator would make of the account's
	// token; a client certificate with the same name and groups is the same
	// identity to RBAC.
	return c.UserConfig(t, "system:serviceaccount:"+sa.Namespace+":"+sa.Name,
		"system:serviceaccounts", "system:serviceaccounts:"+sa.Namespace)
}

func mustUnmarshal(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatalf("deploy/rbac.yaml: %v", err)
	}
}

func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
