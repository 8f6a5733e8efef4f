package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadMemberKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if k, err := readMemberKey(""); k != nil || err != nil {
		t.Errorf("no flag: %q, %v; want no key", k, err)
	}
	if k, err := readMemberKey(filepath.Join(dir, "absent")); k != nil || err != nil {
		t.Errorf("no file (the optional Secret is not there): %q, %v; want no key", k, err)
	}
	key := "k4Vd0vJ6q3mW1xZ8bN2cR5tY7uI9oP0a"
	if k, err := readMemberKey(write("key", key+"\n")); string(k) != key || err != nil {
		t.Errorf("key with a newline: %q, %v; want %q", k, err, key)
	}
	if _, err := readMemberKey(write("short", "abc\n")); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("3-byte key: %v, want an error saying at least 16", err)
	}
	if _, err := readMemberKey(dir); err == nil {
		t.Error("a directory: no error")
	}
}
