package main

import (
	"testing"
)

// TestCommands: up, down and the hidden run exist, and the command line up starts runs run
// with up's flags.
func TestCommands(t *testing.T) {
	root := newRootCommand()
	for _, name := range []string{"up", "down", "run"} {
		c, _, err := root.Find([]string{name})
		if err != nil || c.Name() != name {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Hidden != (name == "run") {
			t.Errorf("%s: hidden %v", name, c.Hidden)
		}
	}
	args := runCommand("/bin/ferrolb-lab", "/tmp/some-lab", "xdp")
	c, rest, err := root.Find(args[1:])
	if err != nil || c.Name() != "run" {
		t.Fatalf("%q: found %v, %v", args, c.Name(), err)
	}
	if err := c.ParseFlags(rest); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"dir": "/tmp/some-lab", "datapath": "xdp"} {
		if got, err := c.Flags().GetString(flag); err != nil || got != want {
			t.Errorf("--%s: %q, %v; want %q", flag, got, err, want)
		}
	}
}
