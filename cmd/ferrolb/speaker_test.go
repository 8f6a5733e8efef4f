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
	if k, err := readMemberKey("", false); k != nil || err != nil {
		t.Errorf("no flag: %q, %v; want no key", k, err)
	}
	// The Secret or its key is not there: fail closed, saying how to fix it, unless unsigned
	// heartbeats are allowed.
	if k, err := readMemberKey(filepath.Join(dir, "absent"), false); k != nil || err == nil ||
		!strings.Contains(err.Error(), "ferrolb-memberlist") || !strings.Contains(err.Error(), "--member-accept-unsigned") {
		t.Errorf("no file: %q, %v; want an error naming the Secret and --member-accept-unsigned", k, err)
	}
	if k, err := readMemberKey(filepath.Join(dir, "absent"), true); k != nil || err != nil {
		t.Errorf("no file, --member-accept-unsigned: %q, %v; want no key", k, err)
	}
	key := "k4Vd0vJ6q3mW1xZ8bN2cR5tY7uI9oP0a"
	if k, err := readMemberKey(write("key", key+"\n"), false); string(k) != key || err != nil {
		t.Errorf("key with a newline: %q, %v; want %q", k, err, key)
	}
	if _, err := readMemberKey(write("short", "abc\n"), false); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("3-byte key: %v, want an error saying at least 16", err)
	}
	if _, err := readMemberKey(dir, false); err == nil {
		t.Error("a directory: no error")
	}
}

// TestPodAddr: metrics and probes listen on the pod's address by default, not on every
// interface of the host (the speaker is in the host network), and on loopback without one.
func TestPodAddr(t *testing.T) {
	for _, tt := range []struct{ podIP, want string }{
		{"", "127.0.0.1:7474"},
		{"192.0.2.7", "192.0.2.7:7474"},
		{"fd00::7", "[fd00::7]:7474"},
	} {
		t.Setenv("POD_IP", tt.podIP)
		if got := podAddr(7474); got != tt.want {
			t.Errorf("POD_IP=%q: %q, want %q", tt.podIP, got, tt.want)
		}
	}
}
