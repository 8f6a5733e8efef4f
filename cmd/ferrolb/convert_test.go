package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunConvert checks the exit statuses of ferrolb convert and that one run reports every
// problem of every object.
func TestRunConvert(t *testing.T) {
	const pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec:\n  addresses: [192.0.2.0/24]\n"
	tests := []struct {
		name, in string
		code     int
		stderr   []string // lines that must be there
		stdout   string   // a substring of the output
	}{
		{name: "clean", in: pool, code: convertClean, stdout: "kind: IPPool"},
		{
			name: "warnings",
			in:   pool + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cilium-config, namespace: kube-system}\ndata: {bpf-lb-mode: dsr}\n",
			code: convertWarnings, stdout: "kind: IPPool",
			stderr: []string{"warning: ConfigMap kube-system/cilium-config (document 2): data.bpf-lb-mode: dsr: "},
		},
		{
			name: "every error at once",
			in: pool + "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast, namespace: metallb-system}\n" +
				"spec: {echoInterval: {ms: 50}, receiveInterval: [300], detectMultiplier: 1}\n",
			code: convertError, stdout: "kind: IPPool",
			stderr: []string{
				"error: BFDProfile metallb-system/fast (document 2): spec.detectMultiplier: 1 is not 2 to 255; not converted",
				"error: BFDProfile metallb-system/fast (document 2): spec.echoInterval: is an object, want a number of milliseconds, such as 300; not converted",
				"error: BFDProfile metallb-system/fast (document 2): spec.receiveInterval: is a list, want a number of milliseconds, such as 300; not converted",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.yaml")
			if err := os.WriteFile(path, []byte(tt.in), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := runConvert([]string{path}, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout %q, want it to contain %q", stdout.String(), tt.stdout)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			for _, want := range tt.stderr {
				found := false
				for _, l := range lines {
					found = found || strings.HasPrefix(l, want)
				}
				if !found {
					t.Errorf("stderr has no line starting %q:\n%s", want, stderr.String())
				}
			}
			if len(tt.stderr) == 0 && stderr.Len() > 0 {
				t.Errorf("stderr:\n%s", stderr.String())
			}
		})
	}
}

// TestRunConvertUnreadable: a document that cannot be read, or a missing file, is an error, and
// the other documents and files are still converted.
func TestRunConvertUnreadable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "in.yaml")
	in := "a: [\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/24]}\n---\n- a list\n"
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := runConvert([]string{filepath.Join(dir, "missing.yaml"), path}, strings.NewReader(""), &stdout, &stderr)
	if code != convertError || !strings.Contains(stdout.String(), "kind: IPPool") {
		t.Errorf("exit status %d, output:\n%s", code, stdout.String())
	}
	for _, want := range []string{"missing.yaml: no such file", path + ": document 1: cannot parse YAML", path + ": document 3: not a Kubernetes object"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr has no %q:\n%s", want, stderr.String())
		}
	}
}
