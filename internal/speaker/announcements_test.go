package speaker

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestServiceAnnouncedMetric(t *testing.T) {
	var lines []string
	a := newAnnouncements("n1", funcLogger(func(s string) { lines = append(lines, s) }))
	v4, v6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	a.set(protocolLayer2, map[netip.Addr][]string{v4: {"default/web", "default/web-udp"}})
	a.set(protocolBGP, map[netip.Addr][]string{v4: {"default/web"}, v6: {"default/web"}})
	want := `
# HELP ferrolb_service_announced ` + serviceAnnouncedHelp + `
# TYPE ferrolb_service_announced gauge
ferrolb_service_announced{address="192.0.2.10",namespace="default",node="n1",protocol="bgp",service="web"} 1
ferrolb_service_announced{address="192.0.2.10",namespace="default",node="n1",protocol="layer2",service="web"} 1
ferrolb_service_announced{address="192.0.2.10",namespace="default",node="n1",protocol="layer2",service="web-udp"} 1
ferrolb_service_announced{address="2001:db8::10",namespace="default",node="n1",protocol="bgp",service="web"} 1
`
	if err := testutil.CollectAndCompare(a, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// Withdrawn by layer 2: its series go, and the log says so with the Services.
	a.set(protocolLayer2, nil)
	if n := testutil.CollectAndCount(a); n != 2 {
		t.Errorf("%d series after the layer 2 withdrawal, want the 2 BGP ones", n)
	}
	joined := strings.Join(lines, "\n")
	for _, w := range []string{`"announcing" "protocol"="layer2" "address"="192.0.2.10" "services"=["default/web" "default/web-udp"] "node"="n1"`,
		`"no longer announcing" "protocol"="layer2" "address"="192.0.2.10"`} {
		if !strings.Contains(joined, w) {
			t.Errorf("log lacks %s:\n%s", w, joined)
		}
	}
}
