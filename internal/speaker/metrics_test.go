package speaker

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrolb/ferrolb/internal/l2/member"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// TestMetrics: the collector reports what the responders did, as a scrape would see it.
func TestMetrics(t *testing.T) {
	client, node := netns.ForTest(t, "mcl"), netns.ForTest(t, "mnd")
	if err := netns.Veth(client, "eth0", node, "eth0"); err != nil {
		t.Fatal(err)
	}
	client.MustRun(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")

	ctx, ann := startAnnouncer(t, node)
	vip := netip.MustParseAddr("192.0.2.100")
	if err := ann.Apply(ctx, map[netip.Addr][]string{vip: {"eth0"}}); err != nil {
		t.Fatal(err)
	}
	if out, err := client.Run("arping", "-c", "1", "-C", "1", "-w", "2", "-i", "eth0", "-S", "192.0.2.1", vip.String()); err != nil {
		t.Fatalf("arping: %v\n%s", err, out)
	}

	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := member.New(member.Config{Name: "node"}, conn)
	if err != nil {
		t.Fatal(err)
	}
	// A running tracker counts itself alive once warm (a detection time after it starts).
	testrun.Background(t, "tracker", tr.Run)
	for deadline := time.Now().Add(5 * time.Second); len(tr.Alive()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the tracker never counted itself alive")
		}
	}
	// Two packets that do not count: a stranger's heartbeat, and not a heartbeat at all.
	stray, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stray.Close()
	for _, b := range []string{"FLB\x01\x01\x01x", "hello"} {
		if _, err := stray.WriteTo([]byte(b), conn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := tr.Stats()
		if st.Ignored[member.IgnoredMalformed]+st.Ignored[member.IgnoredUnknownPeer] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tracker did not count the two stray packets: %+v", st)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(l2Collector{ann: ann, tracker: tr})
	want := `
# HELP ferrolb_l2_announced_addresses Addresses this node answers ARP/NDP for, per interface.
# TYPE ferrolb_l2_announced_addresses gauge
ferrolb_l2_announced_addresses{interface="eth0"} 1
# HELP ferrolb_l2_requests_answered_total ARP requests and neighbor solicitations answered, per interface.
# TYPE ferrolb_l2_requests_answered_total counter
ferrolb_l2_requests_answered_total{interface="eth0",protocol="arp"} 1
ferrolb_l2_requests_answered_total{interface="eth0",protocol="ndp"} 0
# HELP ferrolb_l2_takeovers_total Times this node started announcing an address.
# TYPE ferrolb_l2_takeovers_total counter
ferrolb_l2_takeovers_total 1
# HELP ferrolb_speakers_alive Speakers this node sees alive by their heartbeats, itself included unless it cannot announce.
# TYPE ferrolb_speakers_alive gauge
ferrolb_speakers_alive 1
# HELP ferrolb_heartbeats_ignored_total Heartbeats received that did not count, by reason (signature and no-key: the speakers do not share a key).
# TYPE ferrolb_heartbeats_ignored_total counter
ferrolb_heartbeats_ignored_total{reason="malformed"} 1
ferrolb_heartbeats_ignored_total{reason="no-key"} 0
ferrolb_heartbeats_ignored_total{reason="signature"} 0
ferrolb_heartbeats_ignored_total{reason="stale"} 0
ferrolb_heartbeats_ignored_total{reason="unknown-peer"} 1
ferrolb_heartbeats_ignored_total{reason="unsigned"} 0
# HELP ferrolb_packet_handler_panics_total Received packets whose handling panicked (a bug: please report it); each was dropped and the speaker went on. Protocol arp, ndp or heartbeat (interface empty).
# TYPE ferrolb_packet_handler_panics_total counter
ferrolb_packet_handler_panics_total{interface="",protocol="heartbeat"} 0
ferrolb_packet_handler_panics_total{interface="eth0",protocol="arp"} 0
ferrolb_packet_handler_panics_total{interface="eth0",protocol="ndp"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"ferrolb_l2_announced_addresses", "ferrolb_l2_requests_answered_total", "ferrolb_l2_takeovers_total", "ferrolb_speakers_alive",
		"ferrolb_heartbeats_ignored_total", "ferrolb_packet_handler_panics_total"); err != nil {
		t.Error(err)
	}
}
