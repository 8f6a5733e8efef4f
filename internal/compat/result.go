package compat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Warning is something in the input that the output does not express exactly: a field with no
// FerroLB equivalent, a value approximated, or a difference in behaviour. The object was still
// converted (unless an ObjectError says otherwise).
type Warning struct {
	// Object names the source object, for example "IPAddressPool metallb-system/cheap
	// (document 2)".
	Object string
	// Field is the path of the source field, for example "spec.serviceAllocation.namespaceSelectors".
	Field string
	// Message says what happened and why, and what to do about it where there is something.
	Message string
}

func (w Warning) String() string { return w.Object + ": " + w.Field + ": " + w.Message }

// ObjectError is a source object, or a part of one, that could not be converted at all; the
// output leaves it out.
type ObjectError struct {
	Object  string
	Field   string
	Message string
}

func (e *ObjectError) Error() string {
	if e.Field == "" {
		return e.Object + ": " + e.Message
	}
	return e.Object + ": " + e.Field + ": " + e.Message
}

// Output is one FerroLB object and where it came from.
type Output struct {
	// From names the source object, as Warning.Object does.
	From string
	// Object is a *v1alpha1.IPPool, L2Policy, BGPPeer, BGPAdvertisement or BFDProfile with its
	// TypeMeta set.
	Object client.Object
}

// Result is a conversion: the objects written, and what could not be carried over.
type Result struct {
	Outputs  []Output
	Warnings []Warning
	Errors   []*ObjectError
}

// Clean reports whether everything mapped: no warnings and no errors.
func (r Result) Clean() bool { return len(r.Warnings) == 0 && len(r.Errors) == 0 }

// WriteYAML writes the outputs as a stream of YAML documents, each preceded by a comment naming
// its source, ready for `kubectl apply -f`.
func (r Result) WriteYAML(w io.Writer) error {
	for _, o := range r.Outputs {
		b, err := marshalObject(o.Object)
		if err != nil {
			return fmt.Errorf("%s: %w", o.From, err)
		}
		if _, err := fmt.Fprintf(w, "---\n# from %s\n%s", o.From, b); err != nil {
			return err
		}
	}
	return nil
}

// WriteReport writes one line per error and per warning, errors first.
func (r Result) WriteReport(w io.Writer) error {
	var errs []error
	for _, e := range r.Errors {
		_, err := fmt.Fprintf(w, "error: %s\n", e)
		errs = append(errs, err)
	}
	for _, x := range r.Warnings {
		_, err := fmt.Fprintf(w, "warning: %s\n", x)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// marshalObject is the YAML of obj without the fields the API server fills in: an empty status
// and a null creationTimestamp would only be noise in a file meant for kubectl apply.
func marshalObject(obj client.Object) ([]byte, error) {
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, err
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if st, ok := m["status"].(map[string]any); ok && len(st) == 0 {
		delete(m, "status")
	}
	return yaml.Marshal(m)
}

// sortWarnings orders warnings by where they occur in the input, then by field, so the report
// reads top to bottom like the input and golden files are stable.
func sortWarnings(ws []Warning, order map[string]int) {
	sort.SliceStable(ws, func(i, j int) bool {
		a, b := order[ws[i].Object], order[ws[j].Object]
		if a != b {
			return a < b
		}
		return ws[i].Field < ws[j].Field
	})
}

// sortErrors orders errors as sortWarnings orders warnings, so that the errors of one object
// are read together, whichever step of the conversion found them.
func sortErrors(es []*ObjectError, order map[string]int) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := order[es[i].Object], order[es[j].Object]
		if a != b {
			return a < b
		}
		return es[i].Field < es[j].Field
	})
}

// warnings collects the warnings and errors of one conversion.
type warnings struct {
	res *Result
	// broken are the sources with fields of the wrong type, and those errors, by Ref: they are
	// converted for their other problems only. A warning or an error on a field that holds,
	// or is held by, one of those fields is not reported: it would only be a consequence
	// (the field read as empty).
	broken map[string][]*ObjectError
}

func (w warnings) warn(src Source, field, format string, args ...any) {
	if w.consequence(src, field) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	x := Warning{Object: src.Ref(), Field: field, Message: msg}
	if !slices.Contains(w.res.Warnings, x) {
		w.res.Warnings = append(w.res.Warnings, x)
	}
}

func (w warnings) fail(src Source, field, format string, args ...any) {
	if w.consequence(src, field) {
		return
	}
	x := &ObjectError{Object: src.Ref(), Field: field, Message: fmt.Sprintf(format, args...)}
	if !slices.ContainsFunc(w.res.Errors, func(e *ObjectError) bool { return *e == *x }) {
		w.res.Errors = append(w.res.Errors, x)
	}
}

// isBroken reports whether src has fields of the wrong type (see converter.decode).
func (w warnings) isBroken(src Source) bool {
	_, ok := w.broken[src.Ref()]
	return ok
}

// consequence reports whether field of src is, holds or is held by a field already reported
// for a value of the wrong type.
func (w warnings) consequence(src Source, field string) bool {
	if field == "" {
		return false
	}
	return slices.ContainsFunc(w.broken[src.Ref()], func(e *ObjectError) bool {
		return e.Field != "" && related(e.Field, field)
	})
}

// joinQuoted renders names for messages: "a", "b" and "c".
func joinQuoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
