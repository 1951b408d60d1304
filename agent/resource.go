package agent

import (
	"github.com/hoptrace/hoptrace/pods"
	"github.com/hoptrace/hoptrace/spans"
)

// resourceFor builds the OpenTelemetry resource of a pod's spans, with the
// semantic-convention keys Jaeger and the OTel Kubernetes processors use.
func resourceFor(p pods.Pod, node string) *spans.Resource {
	attrs := []spans.Attr{
		spans.String("service.name", p.ServiceName()),
		spans.String("k8s.pod.name", p.Name),
		spans.String("k8s.namespace.name", p.Namespace),
	}
	if node != "" {
		attrs = append(attrs, spans.String("k8s.node.name", node))
	}
	if p.UID != "" {
		attrs = append(attrs, spans.String("k8s.pod.uid", p.UID))
	}
	if p.Workload != "" {
		attrs = append(attrs, spans.String("k8s.workload.name", p.Workload))
	}
	attrs = append(attrs, spans.String("telemetry.sdk.name", "hoptrace"), spans.String("telemetry.sdk.language", "go"))
	return &spans.Resource{Attrs: attrs}
}
