package speaker

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// TestInterfaceTypes: addresses are answered with the right MAC on a bond, a bridge and a
// VLAN sub-interface, as users have them. The kernel of the machine kind FerroLB is developed on
// has neither device type, so there the test skips, naming the missing type; on a kernel with
// bonding and 802.1Q it runs.
func TestInterfaceTypes(t *testing.T) {
	tests := []struct {
		name string
		// setup builds the node's announcing interface (named "svc0") on top of eth0/eth1,
		// and the client's side on top of its eth0/eth1 (client address on "cl0").
		node, client [][]string
	}{
		{
			name: "bond",
			node: [][]string{
				{"ip", "link", "add", "svc0", "type", "bond", "mode", "active-backup"},
				{"ip", "link", "set", "eth0", "down"}, {"ip", "link", "set", "eth0", "master", "svc0"},
				{"ip", "link", "set", "eth1", "down"}, {"ip", "link", "set", "eth1", "master", "svc0"},
				{"ip", "link", "set", "svc0", "up"},
			},
			client: [][]string{
				{"ip", "link", "add", "cl0", "type", "bridge"},
				{"ip", "link", "set", "eth0", "master", "cl0"}, {"ip", "link", "set", "eth1", "master", "cl0"},
				{"ip", "link", "set", "cl0", "up"},
			},
		},
		{
			// Hosts whose uplink is enslaved to a Linux bridge (common with VMs beside pods).
			name: "bridge",
			node: [][]string{
				{"ip", "link", "add", "svc0", "type", "bridge"},
				{"ip", "link", "set", "eth0", "master", "svc0"}, {"ip", "link", "set", "svc0", "up"},
			},
			client: [][]string{
				{"ip", "link", "add", "cl0", "type", "bridge"},
				{"ip", "link", "set", "eth0", "master", "cl0"}, {"ip", "link", "set", "cl0", "up"},
			},
		},
		{
			name:   "vlan",
			node:   [][]string{{"ip", "link", "add", "link", "eth0", "name", "svc0", "type", "vlan", "id", "100"}, {"ip", "link", "set", "svc0", "up"}},
			client: [][]string{{"ip", "link", "add", "link", "eth0", "name", "cl0", "type", "vlan", "id", "100"}, {"ip", "link", "set", "cl0", "up"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, node := netns.ForTest(t, "tcl"), netns.ForTest(t, "tnd")
			for _, pair := range [][2]string{{"eth0", "eth0"}, {"eth1", "eth1"}} {
				if err := netns.Veth(client, pair[0], node, pair[1]); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range tt.node {
				if out, err := node.Run(c[0], c[1:]...); err != nil {
					if strings.Contains(err.Error(), "Unknown device type") {
						t.Skipf("this kernel has no %s device type (%v); the test runs where it has one", tt.name, err)
					}
					t.Fatalf("%v: %s", err, out)
				}
			}
			for _, c := range tt.client {
				client.MustRun(t, c[0], c[1:]...)
			}
			client.MustRun(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "cl0")
			want := strings.TrimSpace(node.MustRun(t, "cat", "/sys/class/net/svc0/address"))

			ctx, ann := startAnnouncer(t, node)
			vip := netip.MustParseAddr("192.0.2.100")
			if err := ann.Apply(ctx, map[netip.Addr][]string{vip: {"svc0"}}); err != nil {
				t.Fatal(err)
			}
			out, err := client.Run("arping", "-c", "1", "-C", "1", "-w", "2", "-r", "-i", "cl0", "-S", "192.0.2.1", vip.String())
			if err != nil || strings.TrimSpace(out) != want {
				t.Errorf("arping %s on a %s: %q (%v), want %s", vip, tt.name, out, err, want)
			}
		})
	}
}
