package datapath

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

func TestParseXDPMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want XDPMode
		err  bool
	}{
		{"", XDPAuto, false},
		{"auto", XDPAuto, false},
		{"native", XDPNative, false},
		{"generic", XDPGeneric, false},
		{"Native", "", true}, // values are lower case, as the flag documents them
		{"skb", "", true},    // ip-link's name for generic: not a value of the flag
		{"driver", "", true},
		{"best-effort", "", true}, // Cilium's; ferrolb convert maps it to auto
	} {
		got, err := ParseXDPMode(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseXDPMode(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
			continue
		}
		if err == nil {
			continue
		}
		for _, s := range []string{"--datapath-xdp-mode", `"native"`, `"generic"`, `"auto"`, `"` + tc.in + `"`} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("ParseXDPMode(%q) error %q does not name %s", tc.in, err, s)
			}
		}
	}
}

// kernelXDPMode is how the kernel says a program is attached to ifname in ns: "native",
// "generic", or "none".
func kernelXDPMode(t *testing.T, ns *netns.NS, ifname string) string {
	t.Helper()
	var x *netlink.LinkXdp
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err == nil {
			x = l.Attrs().Xdp
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case x == nil || !x.Attached:
		return "none"
	case x.AttachMode == nl.XDP_ATTACHED_DRV:
		return "native"
	case x.AttachMode == nl.XDP_ATTACHED_SKB:
		return "generic"
	}
	return fmt.Sprintf("mode %d", x.AttachMode)
}

// checkAttached waits up to 5 s (Run attaches in its own goroutine) until Attachments
// reports want and the kernel agrees with each.
func (l *lab) checkAttached(t *testing.T, want []Attachment) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := l.d.Attachments()
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Attachments() = %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, a := range want {
		if got := kernelXDPMode(t, l.node, a.Interface); got != string(a.Mode) {
			t.Errorf("the kernel has the program on %s in %s mode, want %s", a.Interface, got, a.Mode)
		}
	}
}

// balanced checks that new TCP connections to vip reach each of the three backends and
// echo, and that the program counted their packets: the node neither routes the VIP nor
// forwards, so only the program can have carried them.
func (l *lab) balanced(t *testing.T, vip netip.Addr, mode Mode) {
	t.Helper()
	if err := l.d.SetServices(labServices(vip, mode, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	l.waitNexthops(t)
	seen := l.connectEach(t, vip, 3)
	if len(seen) != 3 {
		t.Fatalf("reached %d backends: %v", len(seen), seen)
	}
	for _, c := range seen {
		c.echo(t, "again")
		_ = c.Close()
	}
	cs, err := l.d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var packets uint64
	for _, c := range cs {
		if c.VIP == vip && !c.Backend.IsValid() {
			packets = c.Packets
		}
	}
	if packets == 0 {
		t.Fatalf("no packets counted for %v: %+v", vip, cs)
	}
}

// TestLabXDPGeneric: in generic mode on veths (which have native XDP: generic is what the
// operator asked for), the program balances real TCP connections, SNAT and DSR, IPv4 and
// IPv6, and an interface deleted and created again gets it back in generic mode.
func TestLabXDPGeneric(t *testing.T) {
	l := newLabOpts(t, labOpts{prefix: "flx-g", cfg: Config{XDPMode: XDPGeneric}})
	want := []Attachment{{"n0", XDPGeneric}, {"n1", XDPGeneric}}
	l.checkAttached(t, want)
	l.balancedThenRecreated(t, want)
}

// balancedThenRecreated checks that every family and mode is balanced, then that n1 deleted
// and created again is reached and attached as want says.
func (l *lab) balancedThenRecreated(t *testing.T, want []Attachment) {
	t.Helper()
	for _, vip := range []netip.Addr{labVIP4, labVIP6} {
		for _, mode := range []Mode{SNAT, DSR} {
			t.Run(caseName(vip, mode), func(t *testing.T) { l.balanced(t, vip, mode) })
		}
	}
	if t.Failed() {
		return
	}
	if err := l.d.SetServices(labServices(labVIP4, SNAT, 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	l.recreateN1(t)
	l.reachAll(t, labVIP4, "after n1 was re-created")
	l.checkAttached(t, want)
}

// TestLabXDPAuto: in auto mode (the default), on veths the program runs in native mode.
// When the node's client side is a bridge, which has no native XDP, it runs in generic
// mode there and on the veth behind the backends too (native there, it could not redirect
// the backends' replies to the bridge); Attachments and the kernel say so, traffic is
// balanced, and n1 created again is attached in generic mode.
func TestLabXDPAuto(t *testing.T) {
	t.Run("veth", func(t *testing.T) {
		l := newLabOpts(t, labOpts{prefix: "flx-v"})
		l.checkAttached(t, []Attachment{{"n0", XDPNative}, {"n1", XDPNative}})
		l.balanced(t, labVIP4, SNAT)
	})
	t.Run("bridge", func(t *testing.T) {
		l := newLabOpts(t, labOpts{prefix: "flx-b", bridged: true})
		want := []Attachment{{"nb0", XDPGeneric}, {"n1", XDPGeneric}}
		l.checkAttached(t, want)
		l.balancedThenRecreated(t, want)
	})
}

// TestXDPNativeUnsupported: native mode on a bridge (no native XDP) fails, and the error
// names the interface, the mode and the way out; auto with a veth and the bridge attaches
// both in generic mode, the veth again after it was attached in native mode.
func TestXDPNativeUnsupported(t *testing.T) {
	ns := netns.ForTest(t, "flx-n")
	ns.MustRun(t, "ip", "link", "add", "xb0", "type", "bridge")
	ns.MustRun(t, "ip", "link", "set", "xb0", "up")
	ns.MustRun(t, "ip", "link", "add", "xv0", "type", "veth", "peer", "name", "xv1")
	ns.MustRun(t, "ip", "link", "set", "xv0", "up")
	run := func(mode XDPMode, ifname string, more ...string) (*Datapath, context.CancelFunc, chan error) {
		var d *Datapath
		if err := ns.Do(func() (err error) {
			d, err = New(Config{Interface: ifname, BackendInterfaces: more, XDPMode: mode})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		return d, cancel, done
	}

	_, cancel, done := run(XDPNative, "xb0")
	defer cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run in native mode on a bridge: no error")
		}
		for _, s := range []string{"xb0", "native mode", "no native XDP", "--datapath-xdp-mode=generic"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run in native mode on a bridge did not fail")
	}
	if got := kernelXDPMode(t, ns, "xb0"); got != "none" {
		t.Errorf("after the failed attach, the kernel has a program on xb0 in %s mode", got)
	}

	// Auto, with a veth first: attached in native mode, then again in generic mode once
	// the bridge turned out to have no native XDP.
	d, cancel, done := run(XDPAuto, "xv0", "xb0")
	l := &lab{node: ns, d: d}
	l.checkAttached(t, []Attachment{{"xv0", XDPGeneric}, {"xb0", XDPGeneric}})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, ifname := range []string{"xv0", "xb0"} {
		if got := kernelXDPMode(t, ns, ifname); got != "none" {
			t.Errorf("after Run returned, the kernel has a program on %s in %s mode", ifname, got)
		}
	}
}

func TestNewRejectsSizesAndMode(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{XDPMode: "skb"}, `--datapath-xdp-mode="skb"`},
		{Config{ConntrackSize: 1000}, "conntrack size: 1000 entries: want 1024 to 16777216"},
		{Config{ConntrackSize: 1 << 25}, "conntrack size: 33554432 entries: want 1024 to 16777216"},
		{Config{MaglevTableSize: 65536}, "Maglev table size: maglev: invalid table size 65536: not prime (try 65521 or 65537)"},
		{Config{MaglevTableSize: 13}, "below the minimum 251"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
	}
}
