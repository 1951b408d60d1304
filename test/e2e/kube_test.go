//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hoptrace/hoptrace/agent"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := e.client.CoreV1().Namespaces().Create(ctxT(t, 30*time.Second), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// deleteNamespace deletes a namespace and waits until it is gone, so the pods
// in it have been stopped (and their CNI state released) when it returns.
func (e *env) deleteNamespace(t *testing.T, name string) {
	t.Helper()
	ctx := ctxT(t, 3*time.Minute)
	err := e.client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("delete namespace %s: %v", name, err)
		return
	}
	for ctx.Err() == nil {
		if _, err := e.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(time.Second)
	}
	t.Errorf("namespace %s still terminating after 3m", name)
}

// app describes one sample-app workload.
type app struct {
	name string
	args []string // sampleapp arguments (role first)
	port int32    // container port, 0 for clients
	// await holds the app back until the agent has captured its pod, so its
	// first connection (which a keep-alive client reuses for ever) is traced.
	await       bool
	annotations map[string]string
	httpProbe   bool // an HTTP readiness probe on /healthz (kubelet traffic)
}

func (e *env) podSpec(a app) corev1.PodSpec {
	c := corev1.Container{
		Name:            a.name,
		Image:           e.image("sampleapp"),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            a.args,
	}
	if a.port != 0 {
		c.Ports = []corev1.ContainerPort{{Name: "app", ContainerPort: a.port}}
		handler := corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("app")}}
		if a.httpProbe {
			handler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("app")}}
		}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: handler, PeriodSeconds: 1}
	}
	spec := corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr[int64](5)}
	if a.await {
		spec.InitContainers = []corev1.Container{{
			Name:            "await-capture",
			Image:           e.image("hoptrace"),
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            []string{"await-capture", "--timeout", "2m"},
		}}
	}
	return spec
}

func ptr[T any](v T) *T { return &v }

func (e *env) createDeployment(t *testing.T, a app) {
	t.Helper()
	labels := map[string]string{"app": a.name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: appNS, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: a.annotations},
				Spec:       e.podSpec(a),
			},
		},
	}
	if _, err := e.client.AppsV1().Deployments(appNS).Create(ctxT(t, 30*time.Second), d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s: %v", a.name, err)
	}
}

// createPod runs a one-shot app (a client with --count) as a bare pod.
func (e *env) createPod(t *testing.T, a app) {
	t.Helper()
	spec := e.podSpec(a)
	spec.RestartPolicy = corev1.RestartPolicyNever
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: appNS, Labels: map[string]string{"app": a.name}, Annotations: a.annotations},
		Spec:       spec,
	}
	if _, err := e.client.CoreV1().Pods(appNS).Create(ctxT(t, 30*time.Second), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", a.name, err)
	}
}

func (e *env) createService(t *testing.T, name string, port int32, appProtocol string) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "app", Port: port, TargetPort: intstr.FromString("app")}},
		},
	}
	if appProtocol != "" {
		s.Spec.Ports[0].AppProtocol = &appProtocol
	}
	s, err := e.client.CoreV1().Services(appNS).Create(ctxT(t, 30*time.Second), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
	return s
}

func (e *env) waitDeploymentReady(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "deployment "+ns+"/"+name+" ready", func() error {
		d, err := e.client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != *d.Spec.Replicas ||
			d.Status.ReadyReplicas != *d.Spec.Replicas || d.Status.Replicas != *d.Spec.Replicas {
			return fmt.Errorf("%d/%d ready, %d updated, %d total", d.Status.ReadyReplicas, *d.Spec.Replicas, d.Status.UpdatedReplicas, d.Status.Replicas)
		}
		return nil
	})
}

// waitDaemonSetReady waits until every scheduled agent pod runs the current
// template and is ready.
func (e *env) waitDaemonSetReady(t *testing.T, timeout time.Duration) *appsv1.DaemonSet {
	t.Helper()
	var ds *appsv1.DaemonSet
	eventually(t, timeout, "DaemonSet "+agentNS+"/"+release+" ready", func() error {
		var err error
		ds, err = e.client.AppsV1().DaemonSets(agentNS).Get(context.Background(), release, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := ds.Status
		if st.ObservedGeneration < ds.Generation || st.DesiredNumberScheduled == 0 ||
			st.UpdatedNumberScheduled != st.DesiredNumberScheduled || st.NumberReady != st.DesiredNumberScheduled ||
			st.NumberAvailable != st.DesiredNumberScheduled {
			return fmt.Errorf("desired %d, updated %d, ready %d, available %d", st.DesiredNumberScheduled, st.UpdatedNumberScheduled, st.NumberReady, st.NumberAvailable)
		}
		return nil
	})
	return ds
}

func (e *env) appPods(t *testing.T, name string) []corev1.Pod {
	t.Helper()
	pods, err := e.client.CoreV1().Pods(appNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		t.Fatalf("list pods of %s: %v", name, err)
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	return live
}

// onePod returns the only live pod of an app.
func (e *env) onePod(t *testing.T, name string) corev1.Pod {
	t.Helper()
	pods := e.appPods(t, name)
	if len(pods) != 1 {
		t.Fatalf("app %s has %d live pods, want 1", name, len(pods))
	}
	return pods[0]
}

func (e *env) waitPodPhase(t *testing.T, name string, timeout time.Duration, phases ...corev1.PodPhase) corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, timeout, "pod "+name+" in "+fmt.Sprint(phases), func() error {
		var err error
		pod, err = e.client.CoreV1().Pods(appNS).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, ph := range phases {
			if pod.Status.Phase == ph {
				return nil
			}
		}
		return fmt.Errorf("phase %s", pod.Status.Phase)
	})
	return *pod
}

func (e *env) logs(t *testing.T, ns, pod, container string) string {
	t.Helper()
	req := e.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container})
	rc, err := req.Stream(ctxT(t, time.Minute))
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", ns, pod, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", ns, pod, err)
	}
	return string(b)
}

// agentPod returns the name of the ready agent pod on a node.
func (e *env) agentPod(t *testing.T, node string) string {
	t.Helper()
	var name string
	eventually(t, 2*time.Minute, "agent pod on "+node, func() error {
		pods, err := e.client.CoreV1().Pods(agentNS).List(context.Background(), metav1.ListOptions{
			LabelSelector: "app.kubernetes.io/name=hoptrace,app.kubernetes.io/component=agent",
			FieldSelector: "spec.nodeName=" + node,
		})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(p) {
				name = p.Name
				return nil
			}
		}
		return fmt.Errorf("%d agent pods, none ready", len(pods.Items))
	})
	return name
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// hoptrace runs the hoptrace CLI in the node's agent pod, as
// `kubectl exec ds/hoptrace -- hoptrace ...` does.
func (e *env) hoptrace(t *testing.T, node string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"exec", "-n", agentNS, e.agentPod(t, node), "-c", "agent", "--", "hoptrace"}, args...)
	return e.run(ctx, e.kubectl, full...)
}

func (e *env) agentPods(t *testing.T, node string) agent.PodsReport {
	t.Helper()
	out, err := e.hoptrace(t, node, "pods", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r agent.PodsReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("hoptrace pods -o json: %v: %s", err, out)
	}
	return r
}

func (e *env) agentFlows(t *testing.T, node string) []agent.Flow {
	t.Helper()
	out, err := e.hoptrace(t, node, "flows", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r agent.FlowsReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("hoptrace flows -o json: %v: %s", err, out)
	}
	return r.Flows
}

// attached reports whether the agent captures the pod (state attached).
func attached(r agent.PodsReport, p corev1.Pod) (bool, string) {
	for _, ap := range r.Pods {
		if ap.Namespace == p.Namespace && ap.Name == p.Name {
			return ap.State == "attached", ap.State + " " + ap.Error
		}
	}
	return false, "not listed; problems: " + strings.Join(r.Problems, "; ")
}

func (e *env) nodes(t *testing.T) []corev1.Node {
	t.Helper()
	nodes, err := e.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	return nodes.Items
}
