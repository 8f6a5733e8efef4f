// Package apischeme is the scheme FerroLB's components share: the Kubernetes kinds they read
// and write and FerroLB's own (ferrolb.io/v1alpha1). The controller and the speaker both use
// it, so it lives in neither.
package apischeme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	ferrolbv1alpha1 "github.com/ferrolb/ferrolb/api/v1alpha1"
)

// New returns a scheme with Kubernetes' built-in kinds and FerroLB's.
func New() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := ferrolbv1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}
