package controller

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"babelfish.dev/babelfish/api/v1alpha1"
)

// Resources of group babelfish.dev.
const (
	resTrainingJobs = "trainingjobs"
	resQueues       = "queues"
)

// crdClient reads and writes Babelfish's types through the API server:
// a typed REST client, never a cache.
type crdClient struct{ rc rest.Interface }

func newCRDClient(cfg *rest.Config, scheme *runtime.Scheme) (*crdClient, error) {
	c := rest.CopyConfig(cfg)
	gv := v1alpha1.GroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	c.ContentType = "application/json"
	c.AcceptContentTypes = "application/json"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("babelfish.dev client: %w", err)
	}
	return &crdClient{rc: rc}, nil
}

// list lists a resource in a namespace ("" for all, or cluster-scoped).
func (c *crdClient) list(ctx context.Context, resource, ns string, into runtime.Object) error {
	return c.rc.Get().NamespaceIfScoped(ns, ns != "").Resource(resource).Do(ctx).Into(into)
}

func (c *crdClient) get(ctx context.Context, resource, ns, name string, into runtime.Object) error {
	return c.rc.Get().NamespaceIfScoped(ns, ns != "").Resource(resource).Name(name).Do(ctx).Into(into)
}

func (c *crdClient) create(ctx context.Context, resource, ns string, obj runtime.Object) error {
	return c.rc.Post().NamespaceIfScoped(ns, ns != "").Resource(resource).Body(obj).Do(ctx).Into(obj)
}

// patchStatus applies a JSON merge patch to the status subresource.
func (c *crdClient) patchStatus(ctx context.Context, resource, ns, name string, body []byte) error {
	return c.rc.Patch(types.MergePatchType).NamespaceIfScoped(ns, ns != "").Resource(resource).Name(name).
		SubResource("status").Body(body).Do(ctx).Error()
}
