package compat

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// decodeInto decodes a source object into the struct of its kind. It reports every field whose
// value has the wrong type (see checkTypes), all of them, as errors; the others are decoded,
// so that the conversion can still check them and report what else is wrong in one run. It
// warns about the fields of the source that the struct does not know: a newer MetalLB or
// Cilium field, or a typo (Cilium's own documentation once spelt connectRetryTimeSeconds
// "connetRetryTimeSeconds"). Either way the field is not converted, and the user is told
// rather than left to find out.
func decodeInto(src Source, into any, w warnings) []*ObjectError {
	var errs []*ObjectError
	clean, bad := checkTypes(src.Fields, reflect.TypeOf(into), "")
	skip := map[string]bool{}
	for _, e := range bad {
		skip[e.path] = true
		errs = append(errs, &ObjectError{Object: src.Ref(), Field: e.path, Message: e.message + "; not converted"})
	}
	js, err := json.Marshal(clean)
	if err == nil {
		err = json.Unmarshal(js, into)
	}
	if err != nil {
		// checkTypes lets nothing through that encoding/json refuses; should it, the
		// error is still reported rather than lost.
		return append(errs, &ObjectError{Object: src.Ref(), Message: err.Error() + "; not converted"})
	}
	back, err := json.Marshal(into)
	if err != nil {
		return append(errs, &ObjectError{Object: src.Ref(), Message: err.Error()})
	}
	var known any
	if err := json.Unmarshal(back, &known); err != nil {
		return append(errs, &ObjectError{Object: src.Ref(), Message: err.Error()})
	}
	for _, u := range unknownFields(src.Fields, known, "", skip) {
		if u.near != "" {
			w.warn(src, u.path, "field not known: field names are case-sensitive, this one is spelt %s; not converted", u.near)
			continue
		}
		w.warn(src, u.path, "field not known to ferrolb convert (a newer %s version, or a typo?): not converted", src.Group())
	}
	return errs
}

// ignoredTopLevel are the parts of an object that are not configuration: status is observed
// state; metadata beyond name, labels and annotations is set by the API server or concerns the
// source object's own lifecycle (see copyMeta).
var ignoredTopLevel = map[string]bool{"status": true, "metadata": true}

// unknownFields lists the paths of the fields set in raw that are missing from known, the same
// object decoded into a struct and encoded again. Fields holding an empty value (null, false,
// 0, "", {} or []) are not reported: encoding omits many of them, and they configure nothing.
// Neither are the paths in skip, fields already reported for a value of the wrong type.
func unknownFields(raw, known any, path string, skip map[string]bool) []unknownField {
	var out []unknownField
	switch r := raw.(type) {
	case map[string]any:
		k, _ := known.(map[string]any)
		keys := make([]string, 0, len(r))
		for key := range r {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			if path == "" && ignoredTopLevel[key] {
				continue
			}
			p := key
			if path != "" {
				p = path + "." + key
			}
			if skip[p] {
				continue
			}
			kv, ok := k[key]
			if !ok {
				if !empty(r[key]) {
					u := unknownField{path: p}
					for kk := range k {
						if strings.EqualFold(kk, key) {
							u.near = kk
						}
					}
					out = append(out, u)
				}
				continue
			}
			out = append(out, unknownFields(r[key], kv, p, skip)...)
		}
	case []any:
		k, _ := known.([]any)
		for i, v := range r {
			if i >= len(k) {
				break
			}
			p := path + "[" + strconv.Itoa(i) + "]"
			if skip[p] {
				continue
			}
			out = append(out, unknownFields(v, k[i], p, skip)...)
		}
	}
	return out
}

// unknownField is a field unknownFields found, and the known field of the same name but for
// case, if there is one: "PeerAddress" for peerAddress.
type unknownField struct {
	path, near string
}

func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case float64:
		return x == 0
	case int64: // unstructured objects read from the API server hold integers as int64
		return x == 0
	case int:
		return x == 0
	case string:
		return x == ""
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// fieldPath joins path elements: fieldPath("spec", "addresses", 2) is "spec.addresses[2]".
func fieldPath(parts ...any) string {
	var b strings.Builder
	for _, p := range parts {
		switch x := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", x)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(x)
		}
	}
	return b.String()
}
