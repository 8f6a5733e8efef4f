package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/compat"
)

// With --compat the controller also reads the pools of MetalLB and Cilium as they are in the
// cluster, converted by internal/compat, so that FerroLB can run beside (or instead of) the
// old system before its objects are rewritten. Their CRDs are the old system's: FerroLB
// installs none of them, and a kind whose CRD is missing is skipped with a log line.
//
// +kubebuilder:rbac:groups=metallb.io,resources=ipaddresspools,verbs=list;watch
// +kubebuilder:rbac:groups=cilium.io,resources=ciliumloadbalancerippools,verbs=list;watch

// compatPoolKinds are the pool kinds read per system, newest version first: a kind served at
// several versions is read at the first one the API server knows.
var compatPoolKinds = map[string][]schema.GroupVersionKind{
	"metallb": {{Group: "metallb.io", Version: "v1beta1", Kind: "IPAddressPool"}},
	"cilium": {
		{Group: "cilium.io", Version: "v2", Kind: "CiliumLoadBalancerIPPool"},
		{Group: "cilium.io", Version: "v2alpha1", Kind: "CiliumLoadBalancerIPPool"},
	},
}

// CompatSystems are the values --compat accepts.
func CompatSystems() []string { return []string{"metallb", "cilium"} }

// compatKinds resolves the systems asked for to the kinds the API server serves.
func compatKinds(ctx context.Context, mapper meta.RESTMapper, systems []string) ([]schema.GroupVersionKind, error) {
	var out []schema.GroupVersionKind
	for _, sys := range systems {
		kinds, ok := compatPoolKinds[sys]
		if !ok {
			return nil, fmt.Errorf("--compat: unknown system %q (known: %s)", sys, strings.Join(CompatSystems(), ", "))
		}
		found := false
		for _, gvk := range kinds {
			if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
				out = append(out, gvk)
				found = true
				break
			}
		}
		if !found {
			logf.FromContext(ctx).Info("compat: the CRD is not installed; nothing to read (restart the controller after installing it)",
				"system", sys, "kind", kinds[0].Kind)
		}
	}
	return out, nil
}

// listCompat lists the other systems' pools and records each one's generation in gens, so
// that a change to one triggers a re-sync like a change to an IPPool.
func (s *allocation) listCompat(ctx context.Context, c client.Reader, gens map[string]int64) ([]unstructured.Unstructured, error) {
	var out []unstructured.Unstructured
	for _, gvk := range s.compat {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := c.List(ctx, list); err != nil {
			return nil, fmt.Errorf("compat: list %s: %w", gvk.Kind, err)
		}
		for _, u := range list.Items {
			gens["compat:"+gvk.Kind+":"+u.GetNamespace()+"/"+u.GetName()] = u.GetGeneration()
		}
		out = append(out, list.Items...)
	}
	return out, nil
}

// convertCompat converts the other systems' pools, logging every conversion warning; pools
// that could not be converted are left out. It runs only when the set of pools changed.
func convertCompat(ctx context.Context, objs []unstructured.Unstructured) []v1.IPPool {
	log := logf.FromContext(ctx)
	var srcs []compat.Source
	for i := range objs {
		src, err := compat.FromObject(liveSpec(&objs[i]))
		if err != nil {
			log.Error(err, "compat: object ignored", "kind", objs[i].GetKind(), "name", objs[i].GetName())
			continue
		}
		srcs = append(srcs, src)
	}
	res := compat.Convert(srcs)
	for _, w := range res.Warnings {
		log.Info("compat: "+w.String(), "object", w.Object)
	}
	for _, e := range res.Errors {
		log.Error(e, "compat: not converted")
	}
	var out []v1.IPPool
	for _, o := range res.Outputs {
		if p, ok := o.Object.(*v1.IPPool); ok {
			out = append(out, *p)
		}
	}
	return out
}

// liveSpec is what conversion reads of a live object: the fields a user writes. What the
// API server adds (status, uid, managedFields, ...) has no FerroLB equivalent to warn about.
func liveSpec(u *unstructured.Unstructured) map[string]any {
	md := map[string]any{"name": u.GetName()}
	if ns := u.GetNamespace(); ns != "" {
		md["namespace"] = ns
	}
	if l := u.GetLabels(); len(l) > 0 {
		md["labels"] = anyMap(l)
	}
	out := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": md}
	if spec, ok := u.Object["spec"]; ok {
		out["spec"] = spec
	}
	return out
}

func anyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// mergeCompat adds the converted pools to the native ones; a native IPPool wins a name.
func mergeCompat(ctx context.Context, native, converted []v1.IPPool) []v1.IPPool {
	out := slices.Clone(native)
	for _, p := range converted {
		if slices.ContainsFunc(native, func(n v1.IPPool) bool { return n.Name == p.Name }) {
			logf.FromContext(ctx).Info("compat: an IPPool of the same name exists; the converted pool is not used", "pool", p.Name)
			continue
		}
		out = append(out, p)
	}
	return out
}
