package main

import (
	"log/slog"

	"k8s.io/klog/v2"

	"github.com/hoptrace/hoptrace/pods"
)

// kubeSource builds the Kubernetes pod source: in-cluster, or from kubeconfig.
func kubeSource(kubeconfig, node, cgroupRoot, procRoot string, exclude []string, log *slog.Logger) (pods.Source, error) {
	// client-go logs through klog; send it to the agent's log instead of bare stderr.
	klog.SetSlogLogger(log.With("component", "client-go"))
	return pods.NewKubeSource(pods.KubeConfig{Kubeconfig: kubeconfig, NodeName: node, CgroupRoot: cgroupRoot, ProcRoot: procRoot, ExcludeNamespaces: exclude})
}
