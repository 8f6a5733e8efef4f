package compat

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// decodeInto decodes a source object into the struct of its kind, and reports the fields of the
// source that the struct does not know: a newer MetalLB or Cilium field, or a typo (Cilium's
// own documentation once spelt connectRetryTimeSeconds "connetRetryTimeSeconds"). Either way
// the field is not converted, and the user is told rather than left to find out.
func decodeInto(src Source, into any, w warnings) error {
	if err := json.Unmarshal(src.JSON, into); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			msg := fmt.Sprintf("is a %s, want a %s", te.Value, te.Type)
			if te.Value == "bool" && te.Type.Kind() == reflect.String {
				msg += " (YAML reads unquoted yes, no, on, off, y and n as booleans: quote the value)"
			}
			return &ObjectError{Object: src.Ref(), Field: te.Field, Message: msg}
		}
		return &ObjectError{Object: src.Ref(), Message: err.Error()}
	}
	back, err := json.Marshal(into)
	if err != nil {
		return &ObjectError{Object: src.Ref(), Message: err.Error()}
	}
	var known any
	if err := json.Unmarshal(back, &known); err != nil {
		return &ObjectError{Object: src.Ref(), Message: err.Error()}
	}
	for _, path := range unknownFields(src.Fields, known, "") {
		w.warn(src, path, "field not known to ferrolb convert (a newer %s version, or a typo?): not converted", src.Group())
	}
	return nil
}

// ignoredTopLevel are the parts of an object that are not configuration: status is observed
// state; metadata beyond name, labels and annotations is set by the API server or concerns the
// source object's own lifecycle (see copyMeta).
var ignoredTopLevel = map[string]bool{"status": true, "metadata": true}

// unknownFields lists the paths of the fields set in raw that are missing from known, the same
// object decoded into a struct and encoded again. Fields holding an empty value (null, false,
// 0, "", {} or []) are not reported: encoding omits many of them, and they configure nothing.
func unknownFields(raw, known any, path string) []string {
	var out []string
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
			kv, ok := k[key]
			if !ok {
				if !empty(r[key]) {
					out = append(out, p)
				}
				continue
			}
			out = append(out, unknownFields(r[key], kv, p)...)
		}
	case []any:
		k, _ := known.([]any)
		for i, v := range r {
			if i >= len(k) {
				break
			}
			out = append(out, unknownFields(v, k[i], path+"["+strconv.Itoa(i)+"]")...)
		}
	}
	return out
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
