package pods

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []uint16
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "8080", want: []uint16{8080}},
		{in: "9090, 8080,", want: []uint16{8080, 9090}},
		{in: "8080,8080", want: []uint16{8080}},
		{in: "4567-4569, 1", want: []uint16{1, 4567, 4568, 4569}},
		{in: "65535", want: []uint16{65535}},
		{in: "0", wantErr: true},
		{in: "65536", wantErr: true},
		{in: "80,http", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "90-80", wantErr: true},
		{in: "80-", wantErr: true},
		{in: "80;443", wantErr: true},
	} {
		got, err := parsePorts(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parsePorts(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parsePorts(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestWorkloadName(t *testing.T) {
	owner := func(kind, name string, controller bool) metav1.OwnerReference {
		return metav1.OwnerReference{Kind: kind, Name: name, Controller: &controller}
	}
	for _, tc := range []struct {
		name   string
		owners []metav1.OwnerReference
		labels map[string]string
		want   string
	}{
		{name: "no owner", want: ""},
		{name: "deployment", owners: []metav1.OwnerReference{owner("ReplicaSet", "web-7d9f8b6c5", true)},
			labels: map[string]string{"pod-template-hash": "7d9f8b6c5"}, want: "web"},
		{name: "deployment with dashes", owners: []metav1.OwnerReference{owner("ReplicaSet", "my-api-v2-5f6d7", true)},
			labels: map[string]string{"pod-template-hash": "5f6d7"}, want: "my-api-v2"},
		{name: "bare replicaset", owners: []metav1.OwnerReference{owner("ReplicaSet", "legacy", true)}, want: "legacy"},
		{name: "hash label not a suffix", owners: []metav1.OwnerReference{owner("ReplicaSet", "rs-abc", true)},
			labels: map[string]string{"pod-template-hash": "zzz"}, want: "rs-abc"},
		{name: "statefulset", owners: []metav1.OwnerReference{owner("StatefulSet", "db", true)}, want: "db"},
		{name: "daemonset", owners: []metav1.OwnerReference{owner("DaemonSet", "node-exporter", true)}, want: "node-exporter"},
		{name: "job", owners: []metav1.OwnerReference{owner("Job", "migrate-28934560", true)}, want: "migrate-28934560"},
		{name: "controller wins", owners: []metav1.OwnerReference{owner("ConfigMap", "cm", false), owner("StatefulSet", "db", true)}, want: "db"},
		{name: "no controller: first owner", owners: []metav1.OwnerReference{owner("Thing", "x", false)}, want: "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", OwnerReferences: tc.owners, Labels: tc.labels}}
			if got := workloadName(p); got != tc.want {
				t.Errorf("workloadName = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPodIPs(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   corev1.PodStatus
		want []netip.Addr
	}{
		{name: "none"},
		{name: "dual stack", st: corev1.PodStatus{PodIP: "10.244.0.5", PodIPs: []corev1.PodIP{{IP: "10.244.0.5"}, {IP: "fd00::5"}}},
			want: []netip.Addr{netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("fd00::5")}},
		{name: "old single field", st: corev1.PodStatus{PodIP: "10.244.0.6"}, want: []netip.Addr{netip.MustParseAddr("10.244.0.6")}},
		{name: "garbage dropped", st: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "nope"}, {IP: "10.0.0.1"}}},
			want: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podIPs(tc.st); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("podIPs = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSkipReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		skip bool
	}{
		{name: "plain", pod: corev1.Pod{}},
		{name: "host network", pod: corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true}}, skip: true},
		{name: "opted out", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationInject: "disabled"}}}, skip: true},
		{name: "opted out, any case", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationInject: " Disabled"}}}, skip: true},
		{name: "enabled", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationInject: "enabled"}}}},
		{name: "succeeded", pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, skip: true},
		{name: "failed", pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed}}, skip: true},
		{name: "terminating still runs", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &metav1.Time{}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := skipReason(&tc.pod); (got != "") != tc.skip {
				t.Errorf("skipReason = %q, want skip %v", got, tc.skip)
			}
		})
	}
}

func TestPodFromKube(t *testing.T) {
	kp := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f8b6c5-x2x4z", Namespace: "shop", UID: "0c6b3c6e-1f0a-4a4e-9d55-8a3f0f3b2a10",
			Labels:          map[string]string{"pod-template-hash": "7d9f8b6c5", "tier": "front"},
			Annotations:     map[string]string{AnnotationSkipInboundPorts: "9090", AnnotationSkipOutboundPorts: "5432, 6379", AnnotationContext: " Infer"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-7d9f8b6c5"}},
		},
		Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.244.0.9"}}},
	}
	p, err := podFromKube(kp)
	if err != nil {
		t.Fatal(err)
	}
	want := Pod{
		UID: "0c6b3c6e-1f0a-4a4e-9d55-8a3f0f3b2a10", Name: "web-7d9f8b6c5-x2x4z", Namespace: "shop",
		Labels: kp.Labels, Workload: "web", IPs: []netip.Addr{netip.MustParseAddr("10.244.0.9")},
		SkipInboundPorts: []uint16{9090}, SkipOutboundPorts: []uint16{5432, 6379}, InferContext: true,
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("podFromKube =\n %+v\nwant\n %+v", p, want)
	}
	if p.ServiceName() != "web" {
		t.Errorf("service name %q", p.ServiceName())
	}
	p.Labels["tier"] = "changed"
	if kp.Labels["tier"] != "front" {
		t.Error("Pod.Labels aliases the informer's object, which must stay unchanged")
	}

	for _, v := range []string{"forward", ""} {
		fw := kp.DeepCopy()
		fw.Annotations[AnnotationContext] = v
		if p, err := podFromKube(fw); err != nil || p.InferContext {
			t.Errorf("%s %q: infer %v, err %v; want no inference", AnnotationContext, v, p.InferContext, err)
		}
	}

	for _, ann := range []string{AnnotationSkipInboundPorts, AnnotationSkipOutboundPorts, AnnotationContext} {
		bad := kp.DeepCopy()
		bad.Annotations[ann] = "80,http"
		_, err := podFromKube(bad)
		if !errors.Is(err, ErrBadAnnotation) {
			t.Fatalf("%s malformed: err = %v, want ErrBadAnnotation", ann, err)
		}
		for _, want := range []string{"shop/web-7d9f8b6c5-x2x4z", ann, `http"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
	}
}
