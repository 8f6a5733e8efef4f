package speaker

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"

	"github.com/ferrolb/ferrolb/internal/datapath"
)

// TestDatapathOptions: bad values of the datapath's flags stop the speaker before it does
// anything, with an error naming the flag and what it wants; good ones reach the
// datapath's Config, the mode defaulting to auto.
func TestDatapathOptions(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{DatapathXDPMode: "driver"}, `--datapath-xdp-mode="driver": want "native", "generic" or "auto"`},
		{Options{DatapathConntrackEntries: 100}, "--datapath-conntrack-entries=100: 100 entries: want 1024 to 16777216"},
		{Options{DatapathConntrackEntries: -1}, "--datapath-conntrack-entries=-1: -1 entries: want 1024 to 16777216"},
		{Options{DatapathMaglevTableSize: 65536}, "--datapath-maglev-table-size=65536: maglev: invalid table size 65536: not prime (try 65521 or 65537)"},
		{Options{DatapathMaglevTableSize: 1 << 25}, "--datapath-maglev-table-size=33554432: maglev: invalid table size 33554432: above the maximum 16777216"},
	} {
		tc.opts.NodeName = "n"
		err := Run(context.Background(), &rest.Config{Host: "https://192.0.2.1:1"}, tc.opts)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Run(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	opts := Options{DatapathConntrackEntries: 1 << 20, DatapathMaglevTableSize: 1021}
	if err := checkDatapathOptions(&opts); err != nil {
		t.Fatal(err)
	}
	want := datapath.Config{Interface: "eth0", XDPMode: datapath.XDPAuto, ConntrackSize: 1 << 20, MaglevTableSize: 1021}
	if got := datapathConfig("eth0", opts); !reflect.DeepEqual(got, want) {
		t.Errorf("datapathConfig = %+v, want %+v", got, want)
	}
}

// TestXDPModeMetric: one series per interface the program is attached to, with its mode.
func TestXDPModeMetric(t *testing.T) {
	c := xdpModeCollector{attachments: func() []datapath.Attachment {
		return []datapath.Attachment{{Interface: "eth0", Mode: datapath.XDPNative}, {Interface: "br0", Mode: datapath.XDPGeneric}}
	}}
	want := `# HELP ferrolb_datapath_xdp_mode 1 for the mode the XDP program runs in on an interface: native or generic (--datapath-xdp-mode=auto chooses).
# TYPE ferrolb_datapath_xdp_mode gauge
ferrolb_datapath_xdp_mode{interface="br0",mode="generic"} 1
ferrolb_datapath_xdp_mode{interface="eth0",mode="native"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
