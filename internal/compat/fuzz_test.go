package compat_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrolb/ferrolb/internal/compat"
)

// FuzzConvert feeds arbitrary bytes to the decoder of multi-document YAML and whatever it
// decodes to the conversion and the writers: none may panic, whatever users pipe in. What is
// written must decode again, as FerroLB objects, with nothing to warn about.
//
// Seeds are the documentation examples in testdata and a few malformed streams.
func FuzzConvert(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "---", "--- \n---\n", "{}", "[]", "null", "a: &a [*a]", "kind: List\napiVersion: v1\nitems: [{}]",
		"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [1]}",
		"apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: a}\nspec: {blocks: [{cidr: '::/0'}]}",
		"apiVersion: cilium.io/v2alpha1\nkind: CiliumBGPPeeringPolicy\nmetadata: {name: a}\nspec: {virtualRouters: [{neighbors: [{}]}]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		srcs, err := compat.Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		res := compat.Convert(srcs)
		var out bytes.Buffer
		if err := res.WriteYAML(&out); err != nil {
			t.Fatalf("WriteYAML: %v", err)
		}
		if err := res.WriteReport(io.Discard); err != nil {
			t.Fatalf("WriteReport: %v", err)
		}
		again, err := compat.Decode(&out)
		if err != nil {
			t.Fatalf("the output does not decode: %v\n%s", err, out.String())
		}
		if len(again) != len(res.Outputs) {
			t.Fatalf("wrote %d objects, read back %d", len(res.Outputs), len(again))
		}
		for _, s := range again {
			if s.APIVersion != "ferrolb.io/v1alpha1" {
				t.Fatalf("wrote a %s %s", s.APIVersion, s.Kind)
			}
		}
	})
}
