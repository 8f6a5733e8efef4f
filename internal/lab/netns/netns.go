// Package netns creates network namespaces and veth links for the lab and for tests that
// need real network peers: the kernel's own neighbour resolution, arping, ndisc6, FRR.
// Everything it creates, it removes.
package netns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/ferrolb/ferrolb/internal/nsenter"
)

// NS is a named network namespace (/run/netns/NAME).
type NS struct {
	Name string
}

var seq atomic.Int64

// New creates a namespace named prefix-PID-N with loopback up.
func New(prefix string) (*NS, error) {
	return Named(fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1)))
}

// Named creates the namespace name exactly (the lab's fixed names), with loopback up.
func Named(name string) (*NS, error) {
	ns := &NS{Name: name}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", ns.Name, err, out)
	}
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		return nil, errors.Join(err, ns.Close())
	}
	return ns, nil
}

// ForTest creates a namespace removed when the test ends. It skips the test, saying why, when
// the process may not create namespaces (not root); CI runs as root.
func ForTest(t testing.TB, prefix string) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root (CI runs as root: sudo make test)")
	}
	ns, err := New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// Close deletes the namespace; the kernel removes its interfaces with it.
func (n *NS) Close() error {
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", n.Name, err, out)
	}
	return nil
}

// Run runs a command inside the namespace and returns its standard output.
func (n *NS) Run(name string, args ...string) (string, error) {
	cmd := n.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Command returns a command that runs inside the namespace, for callers that start it
// themselves (long-running peers).
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs f on a thread switched into the namespace, so sockets f opens belong to it (a
// socket keeps its namespace for life). The thread is switched back, or, if that fails,
// discarded, so no other goroutine ever runs in the wrong namespace.
func (n *NS) Do(f func() error) error {
	target, err := netns.GetFromName(n.Name)
	if err != nil {
		return err
	}
	defer target.Close()
	return nsenter.Do(target, f)
}

// Veth links namespace a (interface aName) to namespace b (interface bName) and sets both
// ends up. Interface names are at most 15 bytes.
func Veth(a *NS, aName string, b *NS, bName string) error {
	if out, err := exec.Command("ip", "link", "add", aName, "netns", a.Name, "type", "veth",
		"peer", "name", bName, "netns", b.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("veth %s/%s-%s/%s: %w: %s", a.Name, aName, b.Name, bName, err, out)
	}
	if _, err := a.Run("ip", "link", "set", aName, "up"); err != nil {
		return err
	}
	_, err := b.Run("ip", "link", "set", bName, "up")
	return err
}
