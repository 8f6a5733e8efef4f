package ipam_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

func TestPrefixRange(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   string
		fam    ipam.Family
	}{
		{"10.1.2.0/24", "10.1.2.0-10.1.2.255", ipam.IPv4},
		{"10.1.2.3/24", "10.1.2.0-10.1.2.255", ipam.IPv4}, // host bits are masked off
		{"10.1.2.3/32", "10.1.2.3", ipam.IPv4},
		{"10.0.0.0/31", "10.0.0.0-10.0.0.1", ipam.IPv4},
		{"10.0.0.0/8", "10.0.0.0-10.255.255.255", ipam.IPv4},
		{"0.0.0.0/0", "0.0.0.0-255.255.255.255", ipam.IPv4},
		{"255.255.255.0/24", "255.255.255.0-255.255.255.255", ipam.IPv4},
		{"255.255.255.255/32", "255.255.255.255", ipam.IPv4},
		{"2001:db8::/64", "2001:db8::-2001:db8::ffff:ffff:ffff:ffff", ipam.IPv6},
		{"2001:db8::/127", "2001:db8::-2001:db8::1", ipam.IPv6},
		{"2001:db8::1/128", "2001:db8::1", ipam.IPv6},
		{"::/0", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ipam.IPv6},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ipam.IPv6},
		// An IPv4-mapped IPv6 prefix stays IPv6.
		{"::ffff:10.0.0.0/120", "::ffff:10.0.0.0-::ffff:10.0.0.255", ipam.IPv6},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			r := ipam.PrefixRange(netip.MustParsePrefix(tc.prefix))
			got := []string{r.String(), ipam.FamilyOf(r.From).String(), ipam.FamilyOf(r.To).String(), errString(r.Valid())}
			want := []string{tc.want, tc.fam.String(), tc.fam.String(), ""}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("PrefixRange(%s): [range, family of From, family of To, Valid] (-want +got):\n%s", tc.prefix, diff)
			}
		})
	}
	t.Run("invalid prefix", func(t *testing.T) {
		r := ipam.PrefixRange(netip.Prefix{})
		if diff := cmp.Diff("range invalid IP-invalid IP: not an address", errString(r.Valid())); diff != "" {
			t.Errorf("PrefixRange(invalid).Valid() (-want +got):\n%s", diff)
		}
	})
}

func TestRangeContains(t *testing.T) {
	for _, tc := range []struct {
		r    string
		addr string
		want bool
	}{
		{"10.0.0.10-10.0.0.20", "10.0.0.10", true},
		{"10.0.0.10-10.0.0.20", "10.0.0.20", true},
		{"10.0.0.10-10.0.0.20", "10.0.0.15", true},
		{"10.0.0.10-10.0.0.20", "10.0.0.9", false},
		{"10.0.0.10-10.0.0.20", "10.0.0.21", false},
		{"10.0.0.10-10.0.0.20", "::ffff:10.0.0.15", false}, // other family
		{"10.0.0.10-10.0.0.20", "2001:db8::1", false},
		{"255.255.255.0/24", "255.255.255.255", true},
		{"0.0.0.0/0", "0.0.0.0", true},
		{"0.0.0.0/0", "2001:db8::1", false},
		{"::/0", "10.0.0.1", false},
		{"::/0", "::ffff:10.0.0.1", true},
		{"2001:db8::/64", "2001:db8::ffff:ffff:ffff:ffff", true},
		{"2001:db8::/64", "2001:db8:0:1::", false},
	} {
		t.Run(tc.r+"/"+tc.addr, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, rng(tc.r).Contains(netip.MustParseAddr(tc.addr))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRangeValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    ipam.Range
		want string
	}{
		{"ok", rng("10.0.0.1-10.0.0.2"), ""},
		{"one address", rng("10.0.0.1"), ""},
		{"IPv6", rng("2001:db8::1-2001:db8::ffff"), ""},
		{"no start", ipam.Range{To: netip.MustParseAddr("10.0.0.1")}, "range invalid IP-10.0.0.1: not an address"},
		{"mixed families", ipam.Range{From: netip.MustParseAddr("10.0.0.1"), To: netip.MustParseAddr("2001:db8::1")},
			"range 10.0.0.1-2001:db8::1: start and stop are of different families"},
		{"backwards", rng("10.0.0.2-10.0.0.1"), "range 10.0.0.2-10.0.0.1: start is above stop"},
		{"backwards IPv6", rng("2001:db8::2-2001:db8::1"), "range 2001:db8::2-2001:db8::1: start is above stop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, errString(tc.r.Valid())); diff != "" {
				t.Errorf("Valid() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPoolTotal checks PoolStatus.Total, which counts with big integers and leaves out .0
// and .255 with AvoidBuggyIPs.
func TestPoolTotal(t *testing.T) {
	for _, tc := range []struct {
		name string
		pool ipam.Pool
		want map[string]string
	}{
		{"/24", pool("p", "10.0.0.0/24"), map[string]string{"IPv4": "256"}},
		{"/24 avoiding buggy", avoidBuggy(pool("p", "10.0.0.0/24")), map[string]string{"IPv4": "254"}},
		{"/23 avoiding buggy", avoidBuggy(pool("p", "10.0.0.0/23")), map[string]string{"IPv4": "508"}},
		{"only .255 and .0", avoidBuggy(pool("p", "10.0.0.255-10.0.1.0")), map[string]string{"IPv4": "0"}},
		{"across a .255/.0 boundary", avoidBuggy(pool("p", "10.0.0.254-10.0.1.1")), map[string]string{"IPv4": "2"}},
		{"/32", pool("p", "10.0.0.7/32"), map[string]string{"IPv4": "1"}},
		{"/0", pool("p", "0.0.0.0/0"), map[string]string{"IPv4": "4294967296"}},
		{"/0 avoiding buggy", avoidBuggy(pool("p", "0.0.0.0/0")), map[string]string{"IPv4": "4261412864"}},
		{"IPv6 /64 avoiding buggy", avoidBuggy(pool("p", "2001:db8::/64")), map[string]string{"IPv6": "18446744073709551616"}},
		{"IPv6 /0", pool("p", "::/0"), map[string]string{"IPv6": "340282366920938463463374607431768211456"}},
		{"both families", pool("p", "10.0.0.0/30", "2001:db8::/126"), map[string]string{"IPv4": "4", "IPv6": "4"}},
		{"own ranges overlap", pool("p", "10.0.0.0/30", "10.0.0.2-10.0.0.5"), map[string]string{"IPv4": "6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := ipam.New()
			a.SetPools([]ipam.Pool{tc.pool})
			st, ok := a.Pool("p")
			if !ok || st.Err != nil || st.Conflicts != nil {
				t.Fatalf("Pool(p) = %+v, %v", st, ok)
			}
			got := map[string]string{}
			for fam, n := range st.Total {
				got[fam.String()] = n.String()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Total (-want +got):\n%s", diff)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
