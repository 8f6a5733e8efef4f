package compat_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrolb/ferrolb/internal/compat"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

// TestGolden converts every documentation example in testdata/{metallb,cilium}/NAME.yaml and
// compares the output with NAME.golden.yaml (standard output of ferrolb convert) and the
// report with NAME.golden.txt (its standard error). Run with -update to rewrite them, then
// read the diff: each change in a golden file is a change in what users get.
func TestGolden(t *testing.T) {
	inputs := Inputs(t)
	for _, in := range inputs {
		t.Run(strings.TrimSuffix(in, ".yaml"), func(t *testing.T) {
			res := ConvertFile(t, in)
			var out, report bytes.Buffer
			if err := res.WriteYAML(&out); err != nil {
				t.Fatal(err)
			}
			if err := res.WriteReport(&report); err != nil {
				t.Fatal(err)
			}
			base := filepath.Join("testdata", strings.TrimSuffix(in, ".yaml"))
			golden(t, base+".golden.yaml", out.Bytes())
			golden(t, base+".golden.txt", report.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// Inputs lists the example files under testdata, relative to it ("metallb/l2.yaml").
func Inputs(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".golden.yaml") {
			continue
		}
		rel, _ := filepath.Rel("testdata", p)
		out = append(out, filepath.ToSlash(rel))
	}
	if len(out) == 0 {
		t.Fatal("no examples in testdata")
	}
	return out
}

// ConvertFile decodes and converts one example.
func ConvertFile(t testing.TB, rel string) compat.Result {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	srcs, err := compat.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return compat.Convert(srcs)
}
