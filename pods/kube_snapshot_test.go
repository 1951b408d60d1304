package pods

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestSnapshotFromPods(t *testing.T) {
	n := newFakeNode(t)
	pod := func(name, uid string, mutate func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(uid)}}
		if mutate != nil {
			mutate(p)
		}
		return p
	}
	running := func(uid string, pid int) {
		n.cgroup("kubepods/besteffort/pod"+uid+"/c", pid)
		n.process(pid)
	}
	const (
		uidB    = "b0000000-0000-4000-8000-000000000000"
		uidA    = "a0000000-0000-4000-8000-000000000000"
		uidHost = "c0000000-0000-4000-8000-000000000000"
		uidOut  = "d0000000-0000-4000-8000-000000000000"
		uidBad  = "e0000000-0000-4000-8000-000000000000"
		uidNew  = "f0000000-0000-4000-8000-000000000000"
		uidSys  = "90000000-0000-4000-8000-000000000000"
	)
	for i, uid := range []string{uidA, uidB, uidHost, uidOut, uidBad, uidSys} {
		running(uid, 100+i)
	}
	src := &KubeSource{resolver: newResolver(n.cgroupRoot, n.procRoot), exclude: map[string]bool{"kube-system": true}}
	snap := src.snapshot([]*corev1.Pod{
		pod("b", uidB, nil),
		pod("a", uidA, func(p *corev1.Pod) { p.Labels = map[string]string{"app": "alpha"} }),
		pod("host", uidHost, func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		pod("out", uidOut, func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationInject: "disabled"} }),
		pod("bad", uidBad, func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationSkipOutboundPorts: "x"} }),
		pod("new", uidNew, nil),
		pod("coredns", uidSys, func(p *corev1.Pod) { p.Namespace = "kube-system" }),
	})
	var names []string
	for _, p := range snap.Pods {
		names = append(names, p.Name)
		if p.CgroupDir == "" || p.NetnsPath == "" {
			t.Errorf("pod %s not resolved: %+v", p.Name, p)
		}
	}
	if got := strings.Join(names, ","); got != "a,b" {
		t.Errorf("pods = %s, want a,b (sorted; host network, opted out, excluded namespace, bad and starting left out)", got)
	}
	if len(snap.Problems) != 2 || !errors.Is(snap.Problems[0], ErrBadAnnotation) || !errors.Is(snap.Problems[1], ErrPodNotRunning) {
		t.Fatalf("problems = %v, want [bad annotation, not running]", snap.Problems)
	}
	if !strings.Contains(snap.Problems[1].Error(), "ns/new") {
		t.Errorf("problem %q does not name the pod", snap.Problems[1])
	}
	if snap.Pods[0].ServiceName() != "alpha" {
		t.Errorf("service name %q", snap.Pods[0].ServiceName())
	}
}
