package compat

// FromObject makes a Source of a live object's content (unstructured), for the controller's
// --compat mode, which reads the other systems' objects from the cluster rather than files.
func FromObject(m map[string]any) (Source, error) {
	return source(m, 0)
}
