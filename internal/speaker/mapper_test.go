package speaker_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/ferrolb/ferrolb/internal/speaker"
)

// The kinds the speaker maps without the API server map as the real API server's discovery
// says: the same resource, the same scope. Kinds it does not know go to discovery.
func TestStaticMapper(t *testing.T) {
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := apiutil.NewDynamicRESTMapper(env.Config, hc)
	if err != nil {
		t.Fatal(err)
	}
	static := speaker.StaticMapper()
	for gvk := range speaker.SpeakerKinds() {
		want, err := dyn.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%v: discovery: %v", gvk, err)
		}
		got, err := static.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%v: static: %v", gvk, err)
		}
		if got.Resource != want.Resource || got.Scope.Name() != want.Scope.Name() {
			t.Errorf("%v: static %v %s, discovery %v %s", gvk, got.Resource, got.Scope.Name(), want.Resource, want.Scope.Name())
		}
	}
	m, err := speaker.NewMapper(env.Config, hc)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := m.RESTMapping(schema.GroupKind{Group: "coordination.k8s.io", Kind: "Lease"}); err != nil || r.Resource.Resource != "leases" {
		t.Errorf("Lease, through discovery: %v, %v", r, err)
	}
}
