// Command image builds an OCI image of one static binary without a Docker daemon and without
// pulling a base: a single layer on an empty image holds the binary and the /etc/passwd and
// /etc/group entries of a non-root user (the distroless "nonroot", 65532), and nothing else.
// It writes an OCI image layout as a tar file that also carries Docker's manifest.json, so
// both `ctr images import` and `docker load` accept it.
//
// The result depends only on its inputs: every timestamp is -epoch (default
// $SOURCE_DATE_EPOCH, else 0), owners are 0 or 65532, files are in a fixed order and gzip
// gets no name or time. The same binary and flags give the same image digest.
//
//	go run ./hack/image -binary bin/linux-amd64/ferrolb -name ghcr.io/ferrolb/ferrolb:dev \
//	    -label org.opencontainers.image.version=dev -o bin/ferrolb-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonRoot is the user the image runs as unless a pod says otherwise: distroless's nonroot.
const nonRoot = 65532

type labels map[string]string

func (l labels) String() string { return fmt.Sprint(map[string]string(l)) }

func (l labels) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want key=value", s)
	}
	l[k] = v
	return nil
}

type options struct {
	binary, name, out, arch, user string
	args                          []string
	labels                        labels
	epoch                         time.Time
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(argv []string) error {
	o := options{labels: labels{}}
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.StringVar(&o.binary, "binary", "", "the static binary; laid at /NAME and run as the entrypoint")
	fs.StringVar(&o.name, "name", "", "the image's name, repository:tag")
	fs.StringVar(&o.out, "o", "", "the tar file to write")
	fs.StringVar(&o.arch, "arch", "amd64", "the binary's GOARCH")
	fs.StringVar(&o.user, "user", strconv.Itoa(nonRoot), "the user the image runs as (uid[:gid])")
	fs.Var(o.labels, "label", "a label key=value (repeat)")
	args := fs.String("args", "", "default arguments, space separated")
	epoch := fs.Int64("epoch", envEpoch(), "the time of every file and of the image (Unix seconds)")
	if err := fs.Parse(argv); err != nil {
		return err
	}
	if o.binary == "" || o.name == "" || o.out == "" {
		return errors.New("-binary, -name and -o are required")
	}
	o.args = strings.Fields(*args)
	o.epoch = time.Unix(*epoch, 0).UTC()
	img, err := build(o)
	if err != nil {
		return err
	}
	return write(img, o.name, o.out)
}

func envEpoch() int64 {
	n, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// build lays the binary and the user database in one layer on an empty OCI image.
func build(o options) (v1.Image, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, err
	}
	entry := "/" + filepath.Base(o.binary)
	files := []file{
		{name: "etc/", mode: 0o755 | tarDir},
		{name: "etc/group", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonRoot))},
		{name: "etc/passwd", mode: 0o644, data: []byte(fmt.Sprintf(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRoot, nonRoot))},
		{name: "home/", mode: 0o755 | tarDir},
		{name: "home/nonroot/", mode: 0o700 | tarDir, owner: nonRoot},
		{name: "tmp/", mode: 0o1777 | tarDir},
		{name: entry[1:], mode: 0o755, data: bin},
	}
	layerTar, err := tarFiles(files, o.epoch)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: o.epoch},
			CreatedBy: "hack/image: " + entry + " and a nonroot user",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.arch
	cf.Created = v1.Time{Time: o.epoch}
	cf.Config.Entrypoint = []string{entry}
	cf.Config.Cmd = o.args
	cf.Config.User = o.user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Labels = o.labels
	return mutate.ConfigFile(img, cf)
}

const tarDir = 1 << 31

type file struct {
	name  string
	mode  int64 // permission bits, | tarDir for a directory
	owner int
	data  []byte
}

// tarFiles writes files as a tar stream with fixed times and owners, in name order.
func tarFiles(files []file, epoch time.Time) ([]byte, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name: f.name, Mode: f.mode &^ tarDir, ModTime: epoch, Format: tar.FormatPAX,
			Uid: f.owner, Gid: f.owner, Typeflag: tar.TypeReg, Size: int64(len(f.data)),
		}
		if f.mode&tarDir != 0 {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// write saves img as an OCI image layout plus Docker's manifest.json (as docker save does
// since Docker 25), packed into one tar file with fixed times.
func write(img v1.Image, ref, out string) error {
	tag, err := name.NewTag(ref, name.WeakValidation)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// containerd names the image by io.containerd.image.name; the OCI ref name is the tag.
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          tag.Name(),
		"org.opencontainers.image.ref.name": tag.TagStr(),
	})); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	blob := func(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }
	docker := []map[string]any{{"Config": blob(m.Config.Digest), "RepoTags": []string{tag.Name()}, "Layers": []string{}}}
	for _, l := range m.Layers {
		docker[0]["Layers"] = append(docker[0]["Layers"].([]string), blob(l.Digest))
	}
	dj, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), dj, 0o644); err != nil {
		return err
	}
	var files []file
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			files = append(files, file{name: filepath.ToSlash(rel) + "/", mode: 0o755 | tarDir})
			return nil
		}
		b, err := os.ReadFile(p) //nolint:gosec // our own temporary directory
		files = append(files, file{name: filepath.ToSlash(rel), mode: 0o644, data: b})
		return err
	})
	if err != nil {
		return err
	}
	b, err := tarFiles(files, time.Unix(0, 0).UTC())
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s %s\n", tag.Name(), d)
	return nil
}
