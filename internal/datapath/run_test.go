package datapath

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

// TestRunFollowsNeighbours checks Run's background work: a backend's next hop follows a
// neighbour change, and the program is attached while Run runs and detached after.
func TestRunFollowsNeighbours(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	d, node := newProgDatapathNS(t, Config{})
	if err := d.SetServices([]Service{{VIP: vip4, Port: 80, Protocol: TCP,
		Backends: backends(vip4, 1), TableSize: maglev.SmallSize}}); err != nil {
		t.Fatal(err)
	}
	attached := func() bool {
		l, err := d.nl.LinkByName("n0")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !attached() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("not attached")
		}
		time.Sleep(20 * time.Millisecond)
	}
	dmac := func(sport uint16) [6]byte {
		_, out := run(t, d, pkt{src: netip.AddrPortFrom(client4, sport), dst: netip.AddrPortFrom(vip4, 80), proto: TCP}.build())
		return parse(out).dmac
	}
	if got := dmac(1); got != beMAC(1) {
		t.Fatalf("dmac %x", got)
	}
	link, err := d.nl.LinkByName("n0")
	if err != nil {
		t.Fatal(err)
	}
	moved := [6]byte{0x02, 0, 0, 0, 9, 9}
	if err := d.nl.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4,
		IP: be4(1).AsSlice(), HardwareAddr: moved[:], State: netlink.NUD_PERMANENT}); err != nil {
		t.Fatal(err)
	}
	// The neighbour update reaches Run, which rewrites the backend entry: established
	// flows (source port 1) and new ones follow.
	for sport := uint16(2); dmac(1) != moved || dmac(sport) != moved; sport++ {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			cancel()
			t.Fatalf("next hop still %x", dmac(1))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Run detached the program and freed the objects (and its netlink handle).
	var xdp bool
	if err := node.Do(func() error {
		l, err := netlink.LinkByName("n0")
		if err != nil {
			return err
		}
		xdp = l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if xdp {
		t.Fatal("still attached after Run returned")
	}
	if err := d.SetServices(nil); err == nil {
		t.Fatal("SetServices after Run returned: no error")
	}
	// Run's background work (the neighbour subscription included) is gone too.
	goleak.VerifyNone(t, ignore)
}
