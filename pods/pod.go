// Package pods discovers the pods of this node that hoptrace should capture: from
// the Kubernetes API (a watch of this node's pods) or from a local YAML file (for
// demos and tests). A source reports the whole desired set each time it changes;
// the agent reconciles attachments against it, so no pod is left half captured.
package pods

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// Pod is one pod to capture, with everything the agent needs to attach it.
type Pod struct {
	UID       string // Kubernetes pod UID; empty for pods-file entries without one
	Name      string
	Namespace string
	Labels    map[string]string
	// Workload is the owning workload's name (Deployment, StatefulSet, DaemonSet,
	// Job, ...), used for service.name when no app label is set.
	Workload string

	NetnsPath string // e.g. /proc/<pid>/ns/net or /run/netns/<name>
	CgroupDir string // the pod's cgroup v2 directory
	IPs       []netip.Addr

	SkipInboundPorts  []uint16 // annotation hoptrace.io/skip-inbound-ports
	SkipOutboundPorts []uint16 // annotation hoptrace.io/skip-outbound-ports
	// InferContext: the pod's app forwards no trace headers, and the agent
	// links its outbound requests to its inbound ones from what the kernel
	// sees (annotation hoptrace.io/context: infer; docs/inference.md).
	InferContext bool
}

// ID identifies the pod across agent restarts: its UID, else namespace/name.
func (p Pod) ID() string {
	if p.UID != "" {
		return p.UID
	}
	return p.Namespace + "/" + p.Name
}

// ServiceName is the OpenTelemetry service.name for the pod's spans: the
// app.kubernetes.io/name label, else the app label, else the owning workload,
// else the pod name.
func (p Pod) ServiceName() string {
	for _, k := range []string{"app.kubernetes.io/name", "app"} {
		if v := p.Labels[k]; v != "" {
			return v
		}
	}
	if p.Workload != "" {
		return p.Workload
	}
	return p.Name
}

// Snapshot is the complete desired set of pods at one moment. Problems names the
// pods (or file entries) that could not be resolved; they are left out of Pods
// and do not affect the others.
type Snapshot struct {
	Pods     []Pod
	Problems []error
}

// Source discovers pods. Run sends a Snapshot whenever the set may have changed
// (and periodically, so the agent re-reconciles) until ctx ends.
type Source interface {
	Run(ctx context.Context, out chan<- Snapshot) error
}

// Annotations hoptrace reads on Kubernetes pods.
const (
	AnnotationInject            = "hoptrace.io/inject" // "disabled" opts a pod out
	AnnotationSkipInboundPorts  = "hoptrace.io/skip-inbound-ports"
	AnnotationSkipOutboundPorts = "hoptrace.io/skip-outbound-ports"
	// AnnotationContext says where a pod's outbound trace context comes from:
	// "forward" (the default: the app forwards the headers it received) or
	// "infer" (the agent infers it; needs agent --infer-context).
	AnnotationContext = "hoptrace.io/context"
)

// parseContext reads the hoptrace.io/context annotation: whether to infer.
func parseContext(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "forward":
		return false, nil
	case "infer":
		return true, nil
	}
	return false, fmt.Errorf("%q: want forward or infer", v)
}
