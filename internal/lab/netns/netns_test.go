package netns_test

import (
	"context"
	"io"
	"net"
	"strconv"
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

// A service on the host's loopback answers a client inside a namespace through Forward,
// and stop closes the listener.
func TestForward(t *testing.T) {
	ns := netns.ForTest(t, "fwd")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	stop, err := ns.Forward(context.Background(), l.Addr().String(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// The client runs inside the namespace: only the forwarder can answer it there.
	out, err := ns.Run("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port)+" 2>/dev/null || exit 1; echo ping >&3; head -n1 <&3")
	if err != nil || strings.TrimSpace(out) != "ping" {
		t.Fatalf("echo through the forwarder: %q %v", out, err)
	}
	stop()
	if _, err := ns.Run("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port)); err == nil {
		t.Error("the forwarder still accepts after stop")
	}
}
