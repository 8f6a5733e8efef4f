package speaker

import (
	"net/http"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// The speaker's manager must be created while the API server cannot be reached: that is
// when it starts from its state file. controller-runtime's REST mapper asks the API server's
// discovery which resource serves each kind and whether it is namespaced, and building the
// cache already needs the answer (for the Secrets, cached in one namespace only). So the
// kinds the speaker reads and writes are known here, and discovery is asked only about
// others (none today).

// speakerKinds are the kinds the speaker uses, each namespaced or not; their resources are
// the lower-case plurals (TestStaticMapper checks both against a real API server).
var speakerKinds = []struct {
	gvk        schema.GroupVersionKind
	namespaced bool
}{
	{schema.GroupVersionKind{Version: "v1", Kind: "Service"}, true},
	{schema.GroupVersionKind{Version: "v1", Kind: "Node"}, false},
	{schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, true},
	{schema.GroupVersionKind{Version: "v1", Kind: "Event"}, true},
	{schema.GroupVersionKind{Group: "discovery.k8s.io", Version: "v1", Kind: "EndpointSlice"}, true},
	{schema.GroupVersionKind{Group: "events.k8s.io", Version: "v1", Kind: "Event"}, true},
	{v1.GroupVersion.WithKind("IPPool"), false},
	{v1.GroupVersion.WithKind("L2Policy"), false},
	{v1.GroupVersion.WithKind("BGPPeer"), false},
	{v1.GroupVersion.WithKind("BGPAdvertisement"), false},
	{v1.GroupVersion.WithKind("BFDProfile"), false},
}

func staticMapper() *meta.DefaultRESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for _, k := range speakerKinds {
		scope := meta.RESTScopeRoot
		if k.namespaced {
			scope = meta.RESTScopeNamespace
		}
		m.Add(k.gvk, scope)
	}
	return m
}

// newMapper is the manager's MapperProvider: the static kinds first, discovery (lazily, as
// controller-runtime does) for anything else.
func newMapper(c *rest.Config, hc *http.Client) (meta.RESTMapper, error) {
	dyn, err := apiutil.NewDynamicRESTMapper(c, hc)
	if err != nil {
		return nil, err
	}
	return fallbackMapper{static: staticMapper(), dynamic: dyn}, nil
}

// fallbackMapper answers from static, and from dynamic what static does not know.
type fallbackMapper struct {
	static  meta.RESTMapper
	dynamic meta.RESTMapper
}

func either[T any](f func(meta.RESTMapper) (T, error), m fallbackMapper) (T, error) {
	out, err := f(m.static)
	if meta.IsNoMatchError(err) {
		return f(m.dynamic)
	}
	return out, err
}

func (m fallbackMapper) KindFor(r schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	return either(func(x meta.RESTMapper) (schema.GroupVersionKind, error) { return x.KindFor(r) }, m)
}

func (m fallbackMapper) KindsFor(r schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	return either(func(x meta.RESTMapper) ([]schema.GroupVersionKind, error) { return x.KindsFor(r) }, m)
}

func (m fallbackMapper) ResourceFor(r schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	return either(func(x meta.RESTMapper) (schema.GroupVersionResource, error) { return x.ResourceFor(r) }, m)
}

func (m fallbackMapper) ResourcesFor(r schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	return either(func(x meta.RESTMapper) ([]schema.GroupVersionResource, error) { return x.ResourcesFor(r) }, m)
}

func (m fallbackMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	return either(func(x meta.RESTMapper) (*meta.RESTMapping, error) { return x.RESTMapping(gk, versions...) }, m)
}

func (m fallbackMapper) RESTMappings(gk schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	return either(func(x meta.RESTMapper) ([]*meta.RESTMapping, error) { return x.RESTMappings(gk, versions...) }, m)
}

func (m fallbackMapper) ResourceSingularizer(resource string) (string, error) {
	return either(func(x meta.RESTMapper) (string, error) { return x.ResourceSingularizer(resource) }, m)
}
