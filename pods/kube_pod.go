package pods

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrBadAnnotation marks a pod whose hoptrace annotation cannot be parsed. Such a
// pod is left out (not captured) rather than captured without the exclusion its
// owner asked for: skip-ports exist to keep traffic away from the proxy, and an
// uncaptured pod is the state that cannot break it.
var ErrBadAnnotation = errors.New("bad hoptrace annotation")

// skipReason says why a pod of this node is not captured at all, or "" if it
// should be. These are choices, not problems, so they are not reported.
func skipReason(p *corev1.Pod) string {
	switch {
	case p.Spec.HostNetwork:
		// The pod shares the node's netns: capturing it would capture the node.
		return "host network"
	case strings.EqualFold(strings.TrimSpace(p.Annotations[AnnotationInject]), "disabled"):
		return "opted out"
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		// Its cgroup is gone for good; resolving it would be a problem forever.
		return "finished"
	}
	return ""
}

// podFromKube converts everything the API says about a pod; the node-local
// parts (cgroup, netns) are left to the resolver.
func podFromKube(p *corev1.Pod) (Pod, error) {
	in, err := parsePorts(p.Annotations[AnnotationSkipInboundPorts])
	if err != nil {
		return Pod{}, fmt.Errorf("pod %s/%s: %w %s: %w", p.Namespace, p.Name, ErrBadAnnotation, AnnotationSkipInboundPorts, err)
	}
	out, err := parsePorts(p.Annotations[AnnotationSkipOutboundPorts])
	if err != nil {
		return Pod{}, fmt.Errorf("pod %s/%s: %w %s: %w", p.Namespace, p.Name, ErrBadAnnotation, AnnotationSkipOutboundPorts, err)
	}
	infer, err := parseContext(p.Annotations[AnnotationContext])
	if err != nil {
		return Pod{}, fmt.Errorf("pod %s/%s: %w %s: %w", p.Namespace, p.Name, ErrBadAnnotation, AnnotationContext, err)
	}
	return Pod{
		InferContext:      infer,
		UID:               string(p.UID),
		Name:              p.Name,
		Namespace:         p.Namespace,
		Labels:            maps.Clone(p.Labels),
		Workload:          workloadName(p),
		IPs:               podIPs(p.Status),
		SkipInboundPorts:  in,
		SkipOutboundPorts: out,
	}, nil
}

// workloadName names the workload that owns the pod. A Deployment's pods are
// owned by one of its ReplicaSets, named <deployment>-<pod-template-hash>; the
// Deployment is the name users know, so the hash is cut off.
func workloadName(p *corev1.Pod) string {
	owner := metav1.GetControllerOf(p)
	if owner == nil {
		if len(p.OwnerReferences) == 0 {
			return ""
		}
		owner = &p.OwnerReferences[0]
	}
	if owner.Kind == "ReplicaSet" {
		// Only a ReplicaSet made by a Deployment carries the hash label; a bare
		// ReplicaSet is the workload itself.
		if hash := p.Labels["pod-template-hash"]; hash != "" {
			if name, ok := strings.CutSuffix(owner.Name, "-"+hash); ok && name != "" {
				return name
			}
		}
	}
	return owner.Name
}

// podIPs reads status.podIPs (or the older single status.podIP); unparsable
// entries are dropped, as the API server validates them anyway.
func podIPs(st corev1.PodStatus) []netip.Addr {
	var raw []string
	for _, ip := range st.PodIPs {
		raw = append(raw, ip.IP)
	}
	if len(raw) == 0 && st.PodIP != "" {
		raw = []string{st.PodIP}
	}
	var ips []netip.Addr
	for _, s := range raw {
		if a, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, a.Unmap())
		}
	}
	return ips
}
