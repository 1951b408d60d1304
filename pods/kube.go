package pods

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hoptrace/hoptrace/cgroup2"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeConfig configures a KubeSource. Only NodeName is needed in a DaemonSet pod
// (and comes from NODE_NAME); the rest has defaults.
type KubeConfig struct {
	// REST is the API client configuration. If nil, Kubeconfig is loaded, and if
	// that is empty too, the in-cluster service-account configuration is used.
	REST       *rest.Config
	Kubeconfig string

	// NodeName is this node's name; only pods bound to it are watched. Empty means
	// the NODE_NAME environment variable (set from spec.nodeName by the DaemonSet).
	NodeName string

	// Resync re-sends the snapshot this often even if no pod changed, so the
	// agent re-reconciles and pods that were still starting are resolved again
	// (default 30s).
	Resync time.Duration
	// Coalesce gathers a burst of pod events into one snapshot (default 100ms).
	Coalesce time.Duration

	// CgroupRoot is where the cgroup v2 hierarchy is mounted (default: read from
	// the mount table with cgroup2.Mountpoint).
	CgroupRoot string
	// ProcRoot is the procfs the pods' processes are found in (default /proc);
	// NetnsPath values are under it.
	ProcRoot string

	// ExcludeNamespaces are never captured (kube-system, say), as if every pod
	// in them carried the opt-out annotation.
	ExcludeNamespaces []string
}

// ErrNoNodeName means neither KubeConfig.NodeName nor NODE_NAME says which node
// this is; watching every pod of the cluster instead would be wrong and costly.
var ErrNoNodeName = errors.New("node name not set (KubeConfig.NodeName or NODE_NAME)")

// KubeSource reports this node's pods from the Kubernetes API. It implements
// Source; Run may be called once at a time.
//
// A pod of this node is captured unless it uses the host network, is annotated
// hoptrace.io/inject: disabled, or has finished; those are left out silently.
// A pod with a malformed skip-ports annotation, or whose cgroup or process is
// not on the node (yet), is left out with a Problem naming it (ErrBadAnnotation,
// ErrPodNotRunning) and looked at again in every later snapshot.
type KubeSource struct {
	client   *podClient
	node     string
	resync   time.Duration
	coalesce time.Duration
	resolver *resolver
	exclude  map[string]bool
}

var _ Source = (*KubeSource)(nil)

// NewKubeSource builds the API client and checks the configuration; it does not
// contact the API server (Run does).
func NewKubeSource(cfg KubeConfig) (*KubeSource, error) {
	node := cfg.NodeName
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	if node == "" {
		return nil, ErrNoNodeName
	}
	restCfg, err := restConfig(cfg)
	if err != nil {
		return nil, err
	}
	restCfg = rest.CopyConfig(restCfg)
	if restCfg.UserAgent == "" {
		restCfg.UserAgent = "hoptrace-agent/" + node
	}
	client, err := newPodClient(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	cgRoot := cfg.CgroupRoot
	if cgRoot == "" {
		if cgRoot, err = cgroup2.Mountpoint(); err != nil {
			return nil, fmt.Errorf("find pod cgroups: %w", err)
		}
	}
	procRoot := cfg.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	s := &KubeSource{
		client:   client,
		node:     node,
		resync:   cfg.Resync,
		coalesce: cfg.Coalesce,
		resolver: newResolver(cgRoot, procRoot),
		exclude:  map[string]bool{},
	}
	for _, ns := range cfg.ExcludeNamespaces {
		s.exclude[ns] = true
	}
	if s.resync <= 0 {
		s.resync = 30 * time.Second
	}
	if s.coalesce <= 0 {
		s.coalesce = 100 * time.Millisecond
	}
	return s, nil
}

func restConfig(cfg KubeConfig) (*rest.Config, error) {
	switch {
	case cfg.REST != nil:
		return cfg.REST, nil
	case cfg.Kubeconfig != "":
		c, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		return c, nil
	default:
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster kubernetes config (set a kubeconfig outside a pod): %w", err)
		}
		return c, nil
	}
}
