package pods

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// podClient lists and watches pods, and nothing else. It stands in for the
// generated clientset, whose scheme registers every API group at start-up:
// linking it in makes the agent binary twice as big and most of its resident
// memory pages of that code. Requests are built as the clientset's typed pod
// client builds them, protobuf preferred.
type podClient struct {
	rest   *rest.RESTClient
	params runtime.ParameterCodec
}

func newPodClient(cfg *rest.Config) (*podClient, error) {
	// Built here rather than at package init, so commands that never talk to
	// the API server do not pay for registering core/v1.
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("pod scheme: %w", err)
	}
	// The unversioned option types, as the clientset's scheme has them.
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})

	cfg = rest.CopyConfig(cfg)
	gv := corev1.SchemeGroupVersion
	cfg.GroupVersion = &gv
	cfg.APIPath = "/api"
	cfg.NegotiatedSerializer = rest.CodecFactoryForGeneratedClient(scheme, serializer.NewCodecFactory(scheme)).WithoutConversion()
	c, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &podClient{rest: c, params: runtime.NewParameterCodec(scheme)}, nil
}

// list lists the pods of every namespace matching opts.
func (c *podClient) list(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	list := &corev1.PodList{}
	err := c.rest.Get().
		UseProtobufAsDefault().
		Resource("pods").
		VersionedParams(&opts, c.params).
		Timeout(timeoutOf(opts)).
		Do(ctx).
		Into(list)
	return list, err
}

// watch watches the pods of every namespace matching opts.
func (c *podClient) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rest.Get().
		UseProtobufAsDefault().
		Resource("pods").
		VersionedParams(&opts, c.params).
		Timeout(timeoutOf(opts)).
		Watch(ctx)
}

// timeoutOf is the client-side timeout matching a request's server-side one:
// the reflector ends each watch after a random few minutes this way.
func timeoutOf(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}
