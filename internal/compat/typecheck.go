package compat

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// typeError is a field of a source object whose value has a type the struct of its kind
// cannot take: an object where a number belongs, a list where a string does.
type typeError struct {
	path    string
	message string
}

// typeHinter is a type that says what its values look like, for the message about a value of
// the wrong type (got is that value, as decoded from JSON).
type typeHinter interface {
	typeHint(got any) string
}

var (
	durationType    = reflect.TypeFor[metav1.Duration]()
	timeType        = reflect.TypeFor[metav1.Time]()
	intOrStringType = reflect.TypeFor[intstr.IntOrString]()
	hinterType      = reflect.TypeFor[typeHinter]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	byteSlice       = reflect.TypeFor[[]byte]()
)

// checkTypes walks raw, an object decoded from JSON into maps, lists and scalars, along t, the
// Go type it is to be decoded into, and returns every field whose value t cannot take, each
// with its path. It also returns clean: raw without those values and without the keys that
// name no field of t exactly, which json.Unmarshal then decodes into t without an error.
//
// encoding/json stops at the first value of the wrong type; walking the type reports them
// all in one run. And encoding/json matches field names without regard to case, where the API
// server (and so MetalLB and Cilium) does not: a key spelt "PeerAddress" configures nothing
// there, so it is left out of clean, and reported as unknown (see unknownFields).
//
// A bad element of a list is replaced by null rather than removed, so that the elements after
// it keep their index in the messages of the conversion.
func checkTypes(raw any, t reflect.Type, path string) (clean any, errs []typeError) {
	if raw == nil {
		return nil, nil // null sets nothing, in any field
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(want string) (any, []typeError) {
		return nil, []typeError{{path, mismatch(raw, t, want)}}
	}
	switch {
	case t == durationType:
		s, ok := raw.(string)
		if !ok {
			return bad("a duration such as 90s")
		}
		if _, err := time.ParseDuration(s); err != nil {
			return bad("a duration such as 90s or 1m30s")
		}
		return raw, nil
	case t == timeType:
		s, ok := raw.(string)
		if !ok {
			return bad("a time such as 2006-01-02T15:04:05Z")
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return bad("a time such as 2006-01-02T15:04:05Z")
		}
		return raw, nil
	case t == intOrStringType:
		if _, isNumber := number(raw); isNumber {
			return raw, nil
		}
		if _, isString := raw.(string); isString {
			return raw, nil
		}
		return bad("a number or a string")
	case reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler):
		// A type that decodes itself: ask it.
		b, err := json.Marshal(raw)
		if err == nil {
			err = json.Unmarshal(b, reflect.New(t).Interface())
		}
		if err != nil {
			return nil, []typeError{{path, fmt.Sprintf("is %s, which is not valid here: %v", gotDescription(raw), err)}}
		}
		return raw, nil
	}

	switch t.Kind() {
	case reflect.Interface:
		return raw, nil
	case reflect.String:
		if _, ok := raw.(string); !ok {
			return bad("a string")
		}
		return raw, nil
	case reflect.Bool:
		if _, ok := raw.(bool); !ok {
			return bad("true or false")
		}
		return raw, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := number(raw)
		if !ok {
			return bad("a number")
		}
		lo, hi := intRange(t)
		switch {
		case n != math.Trunc(n):
			return bad("a whole number")
		case n < lo || n > hi:
			return bad(fmt.Sprintf("a number from %s to %s", formatFloat(lo), formatFloat(hi)))
		}
		return raw, nil
	case reflect.Float32, reflect.Float64:
		if _, ok := number(raw); !ok {
			return bad("a number")
		}
		return raw, nil
	case reflect.Slice:
		if t == byteSlice {
			if _, ok := raw.(string); !ok {
				return bad("a string")
			}
			return raw, nil
		}
		list, ok := raw.([]any)
		if !ok {
			return bad("a list")
		}
		out := make([]any, len(list))
		for i, v := range list {
			c, e := checkTypes(v, t.Elem(), path+"["+strconv.Itoa(i)+"]")
			out[i] = c
			errs = append(errs, e...)
		}
		return out, errs
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			return bad("an object")
		}
		out := make(map[string]any, len(m))
		for _, k := range sortedKeys(m) {
			c, e := checkTypes(m[k], t.Elem(), joinPath(path, k))
			errs = append(errs, e...)
			if c == nil && len(e) > 0 {
				continue // the value itself is wrong: leave the key out
			}
			out[k] = c
		}
		return out, errs
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return bad("an object")
		}
		out := map[string]any{}
		for _, f := range jsonFields(t) {
			v, ok := m[f.name]
			if !ok {
				continue
			}
			c, e := checkTypes(v, f.typ, joinPath(path, f.name))
			errs = append(errs, e...)
			if c == nil && len(e) > 0 {
				continue
			}
			out[f.name] = c
		}
		return out, errs
	}
	return raw, nil // kinds the conversion's structs do not use (channels, functions)
}

// number is a JSON number as a float64. Objects decoded from YAML hold float64s; those read
// from the API server (unstructured, for ferrolb controller --compat) hold int64s.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case float32:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// mismatch says what a value is and what its field wants, with a hint where a common slip is
// likely: a number in quotes, or YAML's unquoted yes and no.
func mismatch(got any, t reflect.Type, want string) string {
	if reflect.PointerTo(t).Implements(hinterType) {
		want = reflect.New(t).Interface().(typeHinter).typeHint(got)
	}
	msg := "is " + gotDescription(got) + ", want " + want
	switch g := got.(type) {
	case bool:
		if t.Kind() == reflect.String {
			msg += " (YAML reads unquoted yes, no, on, off, y and n as booleans: quote the value)"
		}
	case float64, int64, int:
		if t.Kind() == reflect.String {
			msg += " (quote the value)"
		}
	case string:
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
			if _, err := strconv.ParseFloat(strings.TrimSpace(g), 64); err == nil {
				msg += " (write the number without quotes)"
			}
		case reflect.Bool:
			if g == "true" || g == "false" {
				msg += " (write it without quotes)"
			}
		}
	}
	return msg
}

// gotDescription names a JSON value for a message: "an object", "a list", or the scalar
// itself with its type, as in `the string "300"`.
func gotDescription(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		if len(x) > 40 {
			x = x[:37] + "..."
		}
		return "the string " + strconv.Quote(x)
	case bool:
		return "the boolean " + strconv.FormatBool(x)
	case float64:
		return "the number " + formatFloat(x)
	case int64, int, int32, float32, json.Number:
		n, _ := number(x)
		return "the number " + formatFloat(n)
	case nil:
		return "null"
	}
	return fmt.Sprintf("a %T", v)
}

func formatFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// intRange is the range of values an integer type holds, as JSON numbers.
func intRange(t reflect.Type) (lo, hi float64) {
	bits := t.Bits()
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return 0, math.Exp2(float64(bits)) - 1
	}
	return -math.Exp2(float64(bits - 1)), math.Exp2(float64(bits-1)) - 1
}

type jsonField struct {
	name string
	typ  reflect.Type
}

// jsonFields lists the fields encoding/json decodes into a struct, by their JSON names: the
// tag's name or the Go name; embedded structs without a name (metav1.TypeMeta) add theirs.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, jsonFields(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, typ: f.Type})
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// related reports whether two field paths are the same field or one holds the other:
// "spec.addresses" and "spec.addresses[1]", "spec" and "spec.holdTime".
func related(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return a == b || strings.HasPrefix(b, a) && (b[len(a)] == '.' || b[len(a)] == '[')
}
