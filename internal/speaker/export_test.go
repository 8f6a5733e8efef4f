package speaker

import (
	"net/http"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// SpeakerKinds are the kinds the static mapper knows, and whether each is namespaced.
func SpeakerKinds() map[schema.GroupVersionKind]bool {
	out := map[schema.GroupVersionKind]bool{}
	for _, k := range speakerKinds {
		out[k.gvk] = k.namespaced
	}
	return out
}

func StaticMapper() meta.RESTMapper { return staticMapper() }

func NewMapper(c *rest.Config, hc *http.Client) (meta.RESTMapper, error) { return newMapper(c, hc) }
