package pods

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/kubetest"
	"github.com/hoptrace/hoptrace/internal/testenv"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestKubeSource runs KubeSource against a real kube-apiserver and etcd, with
// pods "run" as real processes in cgroups named as the kubelet names them. Every
// source runs as the agent's service account with only deploy/rbac.yaml's role,
// so these tests also prove that role is enough. One API server serves all the
// subtests; each has a node and namespace of its own.
func TestKubeSource(t *testing.T) {
	testenv.RequirePrivileged(t) // creating cgroups and moving processes into them
	c := kubetest.Start(t)
	admin := kubetest.Client(t, c.Config)
	agent := applyAgentRBAC(t, c, admin)

	t.Run("Snapshot", func(t *testing.T) { testSnapshot(t, admin, agent) })
	t.Run("ReconcileOnStart", func(t *testing.T) { testReconcileOnStart(t, admin, agent) })
	t.Run("Coalesce", func(t *testing.T) { testCoalesce(t, admin, agent) })
	t.Run("MinimalRBAC", func(t *testing.T) { testMinimalRBAC(t, admin, agent) })
	t.Run("RefusedIdentity", func(t *testing.T) { testRefusedIdentity(t, c, admin) })
}

// testSnapshot: this node's pods appear with their netns, cgroup, labels,
// service name, IPs and skip ports; host-network, opted-out and other nodes'
// pods do not; a bad annotation and a starting pod are problems; a pod that
// starts later is picked up within a fraction of a second; updates and deletes show in the next
// snapshot.
func testSnapshot(t *testing.T, admin kubernetes.Interface, agent *rest.Config) {
	n := newTestNode(t, admin)
	other := newTestNode(t, admin)

	web := n.createPod("web-6b7c8d9f5-q2w3e", func(p *corev1.Pod) {
		p.Labels = map[string]string{"pod-template-hash": "6b7c8d9f5", "tier": "front"}
		p.OwnerReferences = []metav1.OwnerReference{controller("apps/v1", "ReplicaSet", "web-6b7c8d9f5")}
	})
	db := n.createPod("db-0", func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "database"}
		p.OwnerReferences = []metav1.OwnerReference{controller("apps/v1", "StatefulSet", "db")}
	})
	ports := n.createPod("ports", func(p *corev1.Pod) {
		p.Annotations = map[string]string{AnnotationSkipInboundPorts: "9090", AnnotationSkipOutboundPorts: "5432, 6379-6380"}
	})
	hostNet := n.createPod("hostnet", func(p *corev1.Pod) { p.Spec.HostNetwork = true })
	optOut := n.createPod("optout", func(p *corev1.Pod) {
		p.Annotations = map[string]string{AnnotationInject: "disabled"}
	})
	bad := n.createPod("badports", func(p *corev1.Pod) {
		p.Annotations = map[string]string{AnnotationSkipInboundPorts: "80,http"}
	})
	starting := n.createPod("starting", nil)
	// Runs on another node, but its cgroup is on this machine too: only the
	// field selector can keep it out.
	elsewhere := other.createPod("elsewhere", nil)

	webDir, webPID := n.runPod(web)
	n.setIPs(web, "10.244.0.10", "fd00::10")
	dbDir, dbPID := n.runPod(db)
	n.runPod(ports)
	n.runPod(hostNet)
	n.runPod(optOut)
	n.runPod(bad)
	other.runPod(elsewhere)

	snaps := n.runSource(agent, nil)
	snap := waitSnapshot(t, snaps, "db-0, ports and web with its IPs", func(s Snapshot) bool {
		w, _ := findPod(s, web.Name)
		return podNames(s) == "db-0,ports,"+web.Name && w.IPs != nil
	})
	w, _ := findPod(snap, web.Name)
	wantWeb := Pod{
		UID: string(web.UID), Name: web.Name, Namespace: n.ns,
		Labels: web.Labels, Workload: "web",
		NetnsPath: "/proc/" + strconv.Itoa(webPID) + "/ns/net", CgroupDir: webDir,
		IPs: []netip.Addr{netip.MustParseAddr("10.244.0.10"), netip.MustParseAddr("fd00::10")},
	}
	if !reflect.DeepEqual(w, wantWeb) {
		t.Errorf("web =\n %+v\nwant\n %+v", w, wantWeb)
	}
	if w.ServiceName() != "web" {
		t.Errorf("web service name %q, want the Deployment's name", w.ServiceName())
	}
	if netnsInode(t, w.NetnsPath) == netnsInode(t, "/proc/self/ns/net") {
		t.Error("web's NetnsPath is the host netns, not the pod's")
	}
	d, _ := findPod(snap, db.Name)
	if d.ServiceName() != "database" || d.Workload != "db" || d.CgroupDir != dbDir || d.NetnsPath != "/proc/"+strconv.Itoa(dbPID)+"/ns/net" {
		t.Errorf("db = %+v (service name %q)", d, d.ServiceName())
	}
	p, _ := findPod(snap, ports.Name)
	if !slices.Equal(p.SkipInboundPorts, []uint16{9090}) || !slices.Equal(p.SkipOutboundPorts, []uint16{5432, 6379, 6380}) {
		t.Errorf("ports: skip inbound %v outbound %v", p.SkipInboundPorts, p.SkipOutboundPorts)
	}
	wantProblems(t, snap, map[string]error{bad.Name: ErrBadAnnotation, starting.Name: ErrPodNotRunning})

	// The starting pod's container comes up; no API object changes, so only the
	// source's quick re-look at pending pods (well before the 2s resync) notices.
	startedAt := time.Now()
	n.runPod(starting)
	snap = waitSnapshot(t, snaps, "the started pod", func(s Snapshot) bool { _, ok := findPod(s, starting.Name); return ok })
	if d := time.Since(startedAt); d > time.Second {
		t.Errorf("started pod seen after %v, want well under the 2s resync", d.Round(time.Millisecond))
	}
	wantProblems(t, snap, map[string]error{bad.Name: ErrBadAnnotation})

	// Opting out later (an update) and deleting take the pods out.
	optOutDB := db.DeepCopy()
	optOutDB.Annotations = map[string]string{AnnotationInject: "disabled"}
	if _, err := admin.CoreV1().Pods(n.ns).Update(context.Background(), optOutDB, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, snaps, "db opted out", func(s Snapshot) bool { return podNames(s) == "ports,starting,"+web.Name })
	n.deletePod(web.Name)
	waitSnapshot(t, snaps, "web deleted", func(s Snapshot) bool { return podNames(s) == "ports,starting" })
}

// testReconcileOnStart: a source started after its pods exist reports them in
// its very first snapshot (from the initial list, not from events).
func testReconcileOnStart(t *testing.T, admin kubernetes.Interface, agent *rest.Config) {
	n := newTestNode(t, admin)
	var want []string
	for i := range 3 {
		p := n.createPod(fmt.Sprintf("early-%d", i), nil)
		n.runPod(p)
		want = append(want, p.Name)
	}
	snaps := n.runSource(agent, func(c *KubeConfig) { c.Resync = time.Hour })
	select {
	case s := <-snaps:
		if got := podNames(s); got != "early-0,early-1,early-2" || len(s.Problems) > 0 {
			t.Errorf("first snapshot: %s, want pods %v and no problems", describe(s), want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no first snapshot in 30s")
	}
}

// testCoalesce: a burst of pod updates yields a few snapshots, not one each,
// and the last one has the final state.
func testCoalesce(t *testing.T, admin kubernetes.Interface, agent *rest.Config) {
	n := newTestNode(t, admin)
	p := n.createPod("busy", nil)
	n.runPod(p)
	snaps := n.runSource(agent, func(c *KubeConfig) {
		c.Resync = time.Hour
		c.Coalesce = 500 * time.Millisecond
	})
	waitSnapshot(t, snaps, "busy", func(s Snapshot) bool { return podNames(s) == "busy" })

	const updates = 30
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= updates; i++ {
			patch := fmt.Sprintf(`{"metadata":{"labels":{"round":"%d"}}}`, i)
			if _, err := admin.CoreV1().Pods(n.ns).Patch(context.Background(), p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	count := 0
	waitSnapshot(t, snaps, "the last update", func(s Snapshot) bool {
		count++
		b, _ := findPod(s, "busy")
		return b.Labels["round"] == strconv.Itoa(updates)
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d updates -> %d snapshots", updates, count)
	if count > updates/2 {
		t.Errorf("%d updates gave %d snapshots: bursts are not coalesced", updates, count)
	}
}

// testMinimalRBAC: the agent's identity may read pods and nothing else.
func testMinimalRBAC(t *testing.T, admin kubernetes.Interface, agent *rest.Config) {
	ctx := context.Background()
	n := newTestNode(t, admin)
	cs := kubetest.Client(t, agent)
	if _, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.name}); err != nil {
		t.Errorf("agent list pods: %v", err)
	}
	for what, call := range map[string]func() error{
		"list secrets": func() error {
			_, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		},
		"get configmaps": func() error {
			_, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "extension-apiserver-authentication", metav1.GetOptions{})
			return err
		},
		"create pods": func() error {
			_, err := cs.CoreV1().Pods(n.ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "sneaky"},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}},
			}, metav1.CreateOptions{})
			return err
		},
		"delete pods": func() error {
			return cs.CoreV1().Pods(n.ns).Delete(ctx, "any", metav1.DeleteOptions{})
		},
		"list nodes": func() error {
			_, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		},
	} {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("agent may %s: %v, want forbidden", what, err)
		}
	}
}

// testRefusedIdentity: an identity without the role makes Run fail fast with
// ErrKubeAccess instead of waiting forever for a list it will never get.
func testRefusedIdentity(t *testing.T, c *kubetest.Cluster, admin kubernetes.Interface) {
	n := newTestNode(t, admin)
	src, err := NewKubeSource(KubeConfig{REST: c.UserConfig(t, "stranger"), NodeName: n.name})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := make(chan Snapshot, 1)
	err = src.Run(ctx, out)
	if !errors.Is(err, ErrKubeAccess) || !apierrors.IsForbidden(err) {
		t.Fatalf("Run as an unbound user = %v, want ErrKubeAccess wrapping a forbidden error", err)
	}
	if len(out) != 0 {
		t.Error("a snapshot was sent without a pod list")
	}
}

// controller is an owner reference as a workload controller sets it; the owner
// need not exist, since no garbage collector runs.
func controller(apiVersion, kind, name string) metav1.OwnerReference {
	yes := true
	uid := types.UID(fmt.Sprintf("%s-0000-4000-8000-%s%s%s", randSuffix(), randSuffix(), randSuffix(), randSuffix()[:4]))
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}
}

// wantProblems checks that the snapshot's problems are exactly one per named
// pod, each wrapping the given sentinel.
func wantProblems(t *testing.T, s Snapshot, want map[string]error) {
	t.Helper()
	if len(s.Problems) != len(want) {
		t.Errorf("problems: %s; want one each for %v", describe(s), want)
		return
	}
	for name, sentinel := range want {
		found := false
		for _, e := range s.Problems {
			if errors.Is(e, sentinel) && strings.Contains(e.Error(), "/"+name+":") {
				found = true
			}
		}
		if !found {
			t.Errorf("no %v problem naming %s in %s", sentinel, name, describe(s))
		}
	}
}
