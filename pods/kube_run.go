package pods

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// ErrKubeAccess means the API server refused this agent's identity the pod list
// it needs (bad credentials or a missing RBAC binding). Run returns it before
// the first snapshot instead of retrying, because waiting does not fix it and a
// crash-looping agent is noticed.
var ErrKubeAccess = errors.New("kubernetes API refused to list pods")

// Run implements Source: it lists and watches this node's pods and sends a full
// snapshot once the initial list is in, after every burst of pod changes, and
// every resync period. Until the initial list arrives nothing is sent, so an
// unreachable API server never looks like a node without pods; after it, API
// errors are retried by the informer and snapshots carry the last pods known.
func (s *KubeSource) Run(ctx context.Context, out chan<- Snapshot) error {
	ctx, cancel := context.WithCancel(ctx)
	inf, changed, refused, err := s.informer()
	if err != nil {
		cancel()
		return err
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		inf.RunWithContext(ctx)
	}()
	// The informer's goroutines must be gone when Run returns.
	defer func() {
		cancel()
		<-stopped
	}()

	if err := waitSynced(ctx, inf, refused); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch pods of node %s: %w", s.node, err)
	}
	// pending is set while some pod is bound here but not running yet: such a
	// pod is looked at again soon, not at the next resync, because every moment
	// it runs uncaptured its long-lived connections may escape tracing.
	var pending bool
	send := func() bool {
		select {
		case <-changed: // the initial list's events, or ones this snapshot includes
		default:
		}
		snap := s.snapshot(storePods(inf.GetStore()))
		pending = slices.ContainsFunc(snap.Problems, func(err error) bool { return errors.Is(err, ErrPodNotRunning) })
		select {
		case out <- snap:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !send() {
		return nil
	}
	resync := time.NewTicker(s.resync)
	defer resync.Stop()
	var coalesce, retry <-chan time.Time
	for {
		if pending && retry == nil {
			retry = time.After(pendingRetry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			if coalesce == nil {
				coalesce = time.After(s.coalesce)
			}
			continue
		case <-coalesce:
		case <-retry:
		case <-resync.C:
		}
		coalesce, retry = nil, nil
		if !send() {
			return nil
		}
	}
}

// pendingRetry is how soon a pod that is bound but not running yet is resolved
// again.
const pendingRetry = 200 * time.Millisecond

// informer watches the pods bound to this node. changed receives (without
// blocking) on every pod event; refused receives list/watch errors that mean
// the identity may not list pods.
func (s *KubeSource) informer() (inf cache.SharedIndexInformer, changed chan struct{}, refused chan error, err error) {
	selector := fields.OneTermEqualSelector("spec.nodeName", s.node).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return s.client.list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return s.client.watch(ctx, o)
		},
	}
	// No informer resync: Run's own ticker re-sends snapshots, and informer
	// resyncs would only turn into more coalesced events.
	inf = cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	// Managed fields are the bulk of a pod object and never read here.
	if err := inf.SetTransform(func(obj any) (any, error) {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}); err != nil {
		return nil, nil, nil, fmt.Errorf("pod informer: %w", err)
	}
	changed = make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default: // a snapshot is already due
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		return nil, nil, nil, fmt.Errorf("pod informer: %w", err)
	}
	refused = make(chan error, 1)
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			select {
			case refused <- err:
			default:
			}
		}
	}); err != nil {
		return nil, nil, nil, fmt.Errorf("pod informer: %w", err)
	}
	return inf, changed, refused, nil
}

// waitSynced waits for the informer's initial list, or for the API server to
// refuse it. Other list errors (server unreachable) are retried by the informer.
func waitSynced(ctx context.Context, inf cache.SharedIndexInformer, refused <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !inf.HasSynced() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-refused:
			return fmt.Errorf("%w: %w", ErrKubeAccess, err)
		case <-tick.C:
		}
	}
	return nil
}

func storePods(store cache.Store) []*corev1.Pod {
	var pods []*corev1.Pod
	for _, obj := range store.List() {
		if p, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods
}

// snapshot turns the node's pods into the desired set, resolving each one's
// cgroup and netns. Pods come out sorted so equal sets give equal snapshots.
func (s *KubeSource) snapshot(pods []*corev1.Pod) Snapshot {
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var snap Snapshot
	onNode := map[string]bool{}
	for _, kp := range pods {
		if skipReason(kp) != "" || s.exclude[kp.Namespace] {
			continue
		}
		onNode[string(kp.UID)] = true
		p, err := podFromKube(kp)
		if err != nil {
			snap.Problems = append(snap.Problems, err)
			continue
		}
		if p.CgroupDir, p.NetnsPath, err = s.resolver.resolve(p.UID); err != nil {
			snap.Problems = append(snap.Problems, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		snap.Pods = append(snap.Pods, p)
	}
	s.resolver.forget(onNode)
	return snap
}
