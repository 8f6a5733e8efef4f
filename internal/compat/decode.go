// Package compat translates MetalLB's and Cilium's configuration objects into FerroLB's
// (api/v1alpha1), field by field, so that users of either can switch without rewriting.
//
// Everything that FerroLB cannot express exactly comes back as a Warning that names the source
// object, the field and the reason: nothing is dropped silently. The translation is pure (no
// client, no I/O beyond the reader and writer it is given), which lets `ferrolb convert` and the
// tests share it.
//
// MetalLB's and Cilium's kinds are described here by small structs of our own rather than by
// importing their modules, which would pull hundreds of packages into FerroLB's build for a
// few dozen fields.
package compat

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Source is one object read from the input, kept generic until its kind is known.
type Source struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	// Doc is the 1-based number of the YAML document the object came from; objects of a List
	// share their List's number. 0: not read from a document.
	Doc int
	// JSON is the object as JSON, decoded again into the struct of its kind.
	JSON []byte
	// Fields is the object as generic maps and lists, to find the fields the struct of its kind
	// does not know (see unknownFields).
	Fields map[string]any
}

// Group is the API group of the object: "metallb.io", "cilium.io", "" for the core group.
func (s Source) Group() string {
	g, _, ok := strings.Cut(s.APIVersion, "/")
	if !ok {
		return ""
	}
	return g
}

// Ref names the object in messages: kind, namespace/name, and where it was read.
func (s Source) Ref() string {
	id := s.Name
	if s.Namespace != "" {
		id = s.Namespace + "/" + s.Name
	}
	if id == "" {
		id = "(no name)"
	}
	if s.Doc == 0 {
		return s.Kind + " " + id // read from the cluster, not from a document
	}
	return fmt.Sprintf("%s %s (document %d)", s.Kind, id, s.Doc)
}

// Decode reads a stream of YAML documents separated by "---" (JSON works too, being YAML) and
// returns the Kubernetes objects in them, in order. A document holding a List (what `kubectl
// get -o yaml` prints) contributes its items. Empty documents are skipped. A document that
// cannot be read as objects is an error naming it, and the documents after it are still
// read: the error joins one error per such document (errors.Join), and the objects returned
// are the others'. Only a stream that cannot be read further stops it.
func Decode(r io.Reader) ([]Source, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []Source
	var errs []error
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, errors.Join(errs...)
		}
		if err != nil {
			return out, errors.Join(append(errs, fmt.Errorf("document %d: %w", doc, err))...)
		}
		objs, err := decodeDocument(raw, doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", doc, err))
			continue
		}
		out = append(out, objs...)
	}
}

// decodeDocument decodes one YAML document into objects.
func decodeDocument(raw []byte, doc int) (objs []Source, err error) {
	// The YAML parser is third-party code fed arbitrary bytes; should it panic on some input,
	// the user gets an error naming the document rather than a crash of the whole conversion.
	defer func() {
		if r := recover(); r != nil {
			objs, err = nil, fmt.Errorf("cannot parse YAML: %v", r)
		}
	}()
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("cannot parse YAML: %w", err)
	}
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return nil, fmt.Errorf("cannot parse YAML: %w", err)
	}
	if v == nil {
		return nil, nil // an empty document: only comments, or nothing between two "---"
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a Kubernetes object: the document is a %s, not a mapping", describe(v))
	}
	if kind, _ := m["kind"].(string); strings.HasSuffix(kind, "List") && m["items"] != nil {
		items, ok := m["items"].([]any)
		if !ok {
			return nil, fmt.Errorf("%s: items is a %s, not a list", kind, describe(m["items"]))
		}
		for i, it := range items {
			im, ok := it.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: items[%d] is a %s, not an object", kind, i, describe(it))
			}
			s, err := source(im, doc)
			if err != nil {
				return nil, fmt.Errorf("%s: items[%d]: %w", kind, i, err)
			}
			objs = append(objs, s)
		}
		return objs, nil
	}
	s, err := source(m, doc)
	if err != nil {
		return nil, err
	}
	return []Source{s}, nil
}

func source(m map[string]any, doc int) (Source, error) {
	s := Source{Doc: doc, Fields: m}
	var ok bool
	if s.APIVersion, ok = m["apiVersion"].(string); !ok || s.APIVersion == "" {
		return s, errors.New("not a Kubernetes object: apiVersion is missing or not a string")
	}
	if s.Kind, ok = m["kind"].(string); !ok || s.Kind == "" {
		return s, errors.New("not a Kubernetes object: kind is missing or not a string")
	}
	if md, isMap := m["metadata"].(map[string]any); isMap {
		s.Name, _ = md["name"].(string)
		s.Namespace, _ = md["namespace"].(string)
	}
	js, err := json.Marshal(m)
	if err != nil {
		return s, err
	}
	s.JSON = js
	return s, nil
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "list"
	case map[string]any:
		return "mapping"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64:
		return "number"
	}
	return fmt.Sprintf("%T", v)
}
