package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readTar returns the regular files of a tar file by name.
func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[h.Name] = b
		}
	}
}

// TestImage: two builds from the same inputs, at different times and into different
// directories, are the same bytes; the tar is an OCI layout whose image is named for
// containerd and carries Docker's manifest.json pointing at its blobs; the config runs the
// binary as the nonroot user with the labels given.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "ferrolb")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, sub := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, sub, "image.tar")
		if err := run([]string{"-binary", bin, "-name", "example.org/ferrolb:v1", "-o", out,
			"-label", "org.opencontainers.image.version=v1", "-epoch", "1700000000"}); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, out)
	}
	a, err := os.ReadFile(outs[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(outs[1])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same inputs differ")
	}

	files := readTar(t, outs[0])
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != "example.org/ferrolb:v1" {
		t.Fatalf("index.json: %s", files["index.json"])
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &docker); err != nil {
		t.Fatal(err)
	}
	if len(docker) != 1 || len(docker[0].Layers) != 1 {
		t.Fatalf("manifest.json: %s", files["manifest.json"])
	}
	for _, p := range append([]string{docker[0].Config}, docker[0].Layers...) {
		if _, ok := files[p]; !ok {
			t.Errorf("manifest.json names %s, which the tar lacks", p)
		}
	}
	var cfg struct {
		Created string
		Config  struct {
			User       string
			Entrypoint []string
			Labels     map[string]string
		}
	}
	if err := json.Unmarshal(files[docker[0].Config], &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"user": "65532", "entrypoint": []string{"/ferrolb"}, "created": "2023-11-14T22:13:20Z",
		"labels": map[string]string{"org.opencontainers.image.version": "v1"}}
	got := map[string]any{"user": cfg.Config.User, "entrypoint": cfg.Config.Entrypoint, "created": cfg.Created,
		"labels": cfg.Config.Labels}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image config (-want +got):\n%s", diff)
	}
}
