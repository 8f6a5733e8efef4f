package netns_test

import (
	"net"
	"strings"
	"testing"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

func TestVethAndDo(t *testing.T) {
	a := netns.ForTest(t, "nsa")
	b := netns.ForTest(t, "nsb")
	if err := netns.Veth(a, "va", b, "vb"); err != nil {
		t.Fatal(err)
	}
	a.MustRun(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "va")
	b.MustRun(t, "ip", "addr", "add", "192.0.2.2/24", "dev", "vb")
	if out := a.MustRun(t, "ping", "-c", "1", "-W", "2", "192.0.2.2"); !strings.Contains(out, "1 received") {
		t.Fatalf("ping across the veth failed:\n%s", out)
	}
	// Do runs in the namespace: it sees vb, and the calling thread is back afterwards.
	var names []string
	err := b.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(names, ","), "vb") {
		t.Errorf("interfaces inside the namespace = %v, want vb among them", names)
	}
	if _, err := net.InterfaceByName("vb"); err == nil {
		t.Error("vb is visible outside its namespace: Do did not switch back")
	}
}
