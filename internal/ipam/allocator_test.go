package ipam_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

// scenario: SetPools(pools), Assign every request of before in order, Release every Service
// of release, SetPools(repools) if it is not nil, then Assign(req), which must give want;
// then the Services of holds must hold what it says.
type scenario struct {
	name    string
	pools   []ipam.Pool
	before  []ipam.Request
	release []string
	repools []ipam.Pool
	req     ipam.Request
	want    outcome
	holds   map[string][]string
}

func run(t *testing.T, cases []scenario) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := ipam.New()
			a.SetPools(tc.pools)
			for _, r := range tc.before {
				a.Assign(r)
			}
			for _, s := range tc.release {
				a.Release(s)
			}
			if tc.repools != nil {
				a.SetPools(tc.repools)
			}
			assign(t, a, tc.req, tc.want)
			if tc.holds != nil {
				holds(t, a, tc.holds)
			}
		})
	}
}

// with returns req changed by f.
func with(req ipam.Request, f func(*ipam.Request)) ipam.Request {
	f(&req)
	return req
}

func named(req ipam.Request) ipam.Request {
	req.NamedPool = true
	return req
}

func asking(req ipam.Request, ss ...string) ipam.Request {
	req.Addresses = addrs(ss...)
	return req
}

// sharing gives req a sharing key and TCP ports.
func sharing(req ipam.Request, key string, ports ...uint16) ipam.Request {
	req.SharingKey = key
	req.Ports = nil
	for _, p := range ports {
		req.Ports = append(req.Ports, ipam.Port{Protocol: "TCP", Number: p})
	}
	return req
}

func local(req ipam.Request) ipam.Request {
	req.Local = true
	return req
}

func dual(req ipam.Request, policy ipam.Policy, fams ...ipam.Family) ipam.Request {
	req.Policy = policy
	req.Families = fams
	return req
}

const (
	v4f = ipam.IPv4
	v6f = ipam.IPv6
)

func TestPoolFlags(t *testing.T) {
	m := manual(pool("m", "10.0.0.0/30"))
	d := pool("d", "10.0.0.0/30")
	b := avoidBuggy(pool("b", "10.0.0.254-10.0.1.1"))
	run(t, []scenario{
		{
			name:  "autoAssign=false serves no Service that does not name it",
			pools: []ipam.Pool{m}, req: v4("s", "m"),
			want: outcome{Refused: []string{"IPv4: no enabled pool with automatic assignment and IPv4 addresses serves this Service"}},
		},
		{
			name:  "autoAssign=false serves a Service that names it",
			pools: []ipam.Pool{m}, req: named(v4("s", "m")), want: got("10.0.0.0"),
		},
		{
			name:  "autoAssign=false serves a requested address",
			pools: []ipam.Pool{m}, req: asking(v4("s", "m"), "10.0.0.2"), want: got("10.0.0.2"),
		},
		{
			name:  "autoAssign=false is skipped even when first by priority",
			pools: []ipam.Pool{prio(-1, m), pool("auto", "10.0.1.0/30")},
			req:   v4("s", "m", "auto"), want: got("10.0.1.0"),
		},
		{
			name:  "autoAssign=false first by priority, named",
			pools: []ipam.Pool{prio(-1, m), pool("auto", "10.0.1.0/30")},
			req:   named(v4("s", "m", "auto")), want: got("10.0.0.0"),
		},
		{
			name: "autoAssign=false: a held address is kept without a request",
			// The Service once requested the address; it stays while the pool serves it.
			pools:  []ipam.Pool{m},
			before: []ipam.Request{asking(v4("s", "m"), "10.0.0.2")},
			req:    v4("s", "m"), want: got("10.0.0.2"),
		},
		{
			name:  "disabled pool gives nothing new",
			pools: []ipam.Pool{disabled(d)}, req: v4("s", "d"),
			want: outcome{Refused: []string{"IPv4: no enabled pool with automatic assignment and IPv4 addresses serves this Service"}},
		},
		{
			name:  "disabled pool is skipped for the next one",
			pools: []ipam.Pool{disabled(d), pool("e", "10.0.1.0/30")}, req: v4("s", "d", "e"), want: got("10.0.1.0"),
		},
		{
			name:  "disabled pool refuses a requested address",
			pools: []ipam.Pool{disabled(d)}, req: asking(v4("s", "d"), "10.0.0.1"),
			want: outcome{Refused: []string{"10.0.0.1: pool d is disabled"}},
		},
		{
			name:  "disabled pool: holder keeps its address",
			pools: []ipam.Pool{d}, before: []ipam.Request{v4("s", "d")}, repools: []ipam.Pool{disabled(d)},
			req: v4("s", "d"), want: got("10.0.0.0"),
		},
		{
			name:  "disabled pool: holder keeps its requested address",
			pools: []ipam.Pool{d}, before: []ipam.Request{asking(v4("s", "d"), "10.0.0.3")}, repools: []ipam.Pool{disabled(d)},
			req: asking(v4("s", "d"), "10.0.0.3"), want: got("10.0.0.3"),
		},
		{
			name:   "disabled pool: a new sharer does not join an address in it",
			pools:  []ipam.Pool{d, pool("e", "10.0.1.0/30")},
			before: []ipam.Request{sharing(v4("s1", "d"), "k", 80)}, repools: []ipam.Pool{disabled(d), pool("e", "10.0.1.0/30")},
			req: sharing(v4("s2", "d", "e"), "k", 443), want: got("10.0.1.0"),
			holds: map[string][]string{"s1": {"10.0.0.0"}},
		},
		{
			name:  "avoidBuggyIPs skips .255 and .0",
			pools: []ipam.Pool{b}, before: []ipam.Request{v4("s1", "b"), v4("s2", "b")},
			req:   v4("s3", "b"),
			want:  outcome{Refused: []string{"IPv4: no free IPv4 address in pool b"}},
			holds: map[string][]string{"s1": {"10.0.0.254"}, "s2": {"10.0.1.1"}},
		},
		{
			name:  "avoidBuggyIPs starts a /24 at .1",
			pools: []ipam.Pool{avoidBuggy(pool("b", "10.0.0.0/24"))}, req: v4("s", "b"), want: got("10.0.0.1"),
		},
		{
			name:  "avoidBuggyIPs refuses a requested .255",
			pools: []ipam.Pool{b}, req: asking(v4("s", "b"), "10.0.0.255", "10.0.0.254"),
			want: outcome{Addresses: []string{"10.0.0.254"}, Refused: []string{"10.0.0.255: pool b avoids addresses ending in .0 and .255"}},
		},
		{
			name:  "avoidBuggyIPs refuses a requested .0",
			pools: []ipam.Pool{b}, req: asking(v4("s", "b"), "10.0.1.0"),
			want: outcome{Refused: []string{"10.0.1.0: pool b avoids addresses ending in .0 and .255"}},
		},
		{
			name:  "avoidBuggyIPs leaves IPv6 alone",
			pools: []ipam.Pool{avoidBuggy(pool("b", "2001:db8::/126"))},
			req:   dual(v4("s", "b"), ipam.SingleStack, v6f), want: got("2001:db8::"),
		},
		{
			name:  "without avoidBuggyIPs .0 is handed out",
			pools: []ipam.Pool{d}, req: v4("s", "d"), want: got("10.0.0.0"),
		},
	})
}

// TestAvoidBuggyRestored: a .0 or .255 that a Service held when the pool started avoiding
// them (Restore does not consult pools) is not handed out again once released.
func TestAvoidBuggyRestored(t *testing.T) {
	for _, buggyAddr := range []string{"10.0.0.0", "10.0.0.255"} {
		t.Run(buggyAddr, func(t *testing.T) {
			a := ipam.New()
			a.SetPools([]ipam.Pool{avoidBuggy(pool("b", "10.0.0.0/24"))})
			if r := a.Restore(v4("x", "b"), addrs(buggyAddr)); r != nil {
				t.Fatalf("Restore refused %v", r)
			}
			assign(t, a, v4("x", "b"), got(buggyAddr)) // kept: held addresses never move
			assign(t, a, v4("y", "b"), got("10.0.0.1"))
			a.Release("x")
			assign(t, a, v4("z", "b"), got("10.0.0.2"))
			assign(t, a, v4("w", "b"), got("10.0.0.3"))
		})
	}
}

func TestPriority(t *testing.T) {
	full := outcome{Refused: []string{"IPv4: no free IPv4 address in pool small, big"}}
	run(t, []scenario{
		{
			name:  "lower priority first",
			pools: []ipam.Pool{prio(10, pool("a", "10.0.1.0/30")), prio(5, pool("b", "10.0.2.0/30"))},
			req:   v4("s", "a", "b"), want: got("10.0.2.0"),
		},
		{
			name:  "negative priority before zero",
			pools: []ipam.Pool{pool("a", "10.0.1.0/30"), prio(-3, pool("z", "10.0.2.0/30"))},
			req:   v4("s", "a", "z"), want: got("10.0.2.0"),
		},
		{
			name:  "ties go by name",
			pools: []ipam.Pool{pool("b", "10.0.2.0/30"), pool("a", "10.0.1.0/30")},
			req:   v4("s", "b", "a"), want: got("10.0.1.0"),
		},
		{
			name:   "a full pool falls through to the next",
			pools:  []ipam.Pool{pool("small", "10.0.2.0/31"), prio(1, pool("big", "10.0.1.0/24"))},
			before: []ipam.Request{v4("s1", "small", "big"), v4("s2", "small", "big")},
			req:    v4("s3", "small", "big"), want: got("10.0.1.0"),
			holds: map[string][]string{"s1": {"10.0.2.0"}, "s2": {"10.0.2.1"}},
		},
		{
			name:   "every pool full",
			pools:  []ipam.Pool{pool("small", "10.0.2.0/31"), prio(1, pool("big", "10.0.1.0/31"))},
			before: []ipam.Request{v4("s1", "small", "big"), v4("s2", "small", "big"), v4("s3", "small", "big"), v4("s4", "small", "big")},
			req:    v4("s5", "small", "big"), want: full,
		},
		{
			name:  "only the Service's pools",
			pools: []ipam.Pool{prio(-1, pool("other", "10.0.2.0/30")), pool("mine", "10.0.1.0/30")},
			req:   v4("s", "mine"), want: got("10.0.1.0"),
		},
		{
			name:  "unknown pool names are ignored",
			pools: []ipam.Pool{pool("a", "10.0.1.0/30")},
			req:   v4("s", "nope", "a"), want: got("10.0.1.0"),
		},
		{
			name:  "no pool serves the Service",
			pools: []ipam.Pool{pool("a", "10.0.1.0/30")},
			req:   v4("s"),
			want:  outcome{Refused: []string{"IPv4: no enabled pool with automatic assignment and IPv4 addresses serves this Service"}},
		},
		{
			name:  "a pool without the family is skipped",
			pools: []ipam.Pool{prio(-1, pool("v6", "2001:db8::/64")), pool("v4", "10.0.1.0/30")},
			req:   v4("s", "v6", "v4"), want: got("10.0.1.0"),
		},
	})
}

func TestRequested(t *testing.T) {
	p := pool("p", "10.0.0.0/24", "2001:db8::/64")
	run(t, []scenario{
		{
			// https://docs.cilium.io/en/stable/network/lb-ipam/: the Service matches
			// pool-primary and pool-yellow only. Its two IPv4 addresses need a pool that
			// gives a Service more than one: pool-primary's, the second one's.
			name: "Cilium's example",
			pools: []ipam.Pool{
				perService(2, pool("pool-primary", "60.0.10.0/24")),
				pool("pool-green", "40.0.10.0/24"),
				pool("pool-yellow", "50.0.10.0/24"),
			},
			req: asking(v4("default/service-blue", "pool-primary", "pool-yellow"),
				"30.0.10.100", "40.0.10.100", "50.0.10.100", "60.0.10.100"),
			want: outcome{
				Addresses: []string{"50.0.10.100", "60.0.10.100"},
				Refused: []string{
					"30.0.10.100: no pool holds it",
					"40.0.10.100: pool pool-green holds it but does not serve this Service",
				},
			},
		},
		{
			name: "held by another Service", pools: []ipam.Pool{p},
			before: []ipam.Request{asking(v4("a", "p"), "10.0.0.5")},
			req:    asking(v4("b", "p"), "10.0.0.5", "10.0.0.6"),
			want: outcome{Addresses: []string{"10.0.0.6"},
				Refused: []string{"10.0.0.5: held by a, and both need a sharing key to share it"}},
			holds: map[string][]string{"a": {"10.0.0.5"}},
		},
		{
			name: "in a disabled pool", pools: []ipam.Pool{p, disabled(pool("d", "10.0.1.0/24"))},
			req:  asking(v4("s", "p", "d"), "10.0.0.5", "10.0.1.5"),
			want: outcome{Addresses: []string{"10.0.0.5"}, Refused: []string{"10.0.1.5: pool d is disabled"}},
		},
		{
			name: "wrong family for a single-stack IPv4 Service", pools: []ipam.Pool{p},
			req:  asking(v4("s", "p"), "2001:db8::5", "10.0.0.5"),
			want: outcome{Addresses: []string{"10.0.0.5"}, Refused: []string{"2001:db8::5: the Service is single-stack IPv4"}},
		},
		{
			name: "wrong family for a single-stack IPv6 Service", pools: []ipam.Pool{p},
			req:  asking(dual(v4("s", "p"), ipam.SingleStack, v6f), "2001:db8::5", "10.0.0.5"),
			want: outcome{Addresses: []string{"2001:db8::5"}, Refused: []string{"10.0.0.5: the Service is single-stack IPv6"}},
		},
		{
			name: "where pools overlap", pools: []ipam.Pool{pool("a", "10.0.0.0/24"), pool("b", "10.0.0.128/25")},
			req: asking(v4("s", "a", "b"), "10.0.0.200", "10.0.0.5"),
			want: outcome{Addresses: []string{"10.0.0.5"},
				Refused: []string{"10.0.0.200: it lies where pools a and b overlap, and neither hands it out"}},
		},
		{
			name: "another address requested", pools: []ipam.Pool{p},
			before: []ipam.Request{asking(v4("s", "p"), "10.0.0.5")},
			req:    asking(v4("s", "p"), "10.0.0.6"),
			want:   outcome{Addresses: []string{"10.0.0.6"}, Released: []string{"10.0.0.5: no longer requested"}},
		},
		{
			name: "no address requested any more: the requested one is kept", pools: []ipam.Pool{p},
			before: []ipam.Request{asking(v4("s", "p"), "10.0.0.5")},
			req:    v4("s", "p"), want: got("10.0.0.5"),
		},
		{
			name: "no address requested any more: one per family is kept", pools: []ipam.Pool{perService(2, p)},
			before: []ipam.Request{asking(v4("s", "p"), "10.0.0.5", "10.0.0.6")},
			req:    v4("s", "p"),
			want: outcome{Addresses: []string{"10.0.0.5"},
				Released: []string{"10.0.0.6: a Service that requests no address gets one per family"}},
		},
		{
			name: "two addresses of one family from a pool that allows two", pools: []ipam.Pool{perService(2, p)},
			req: asking(v4("s", "p"), "10.0.0.6", "10.0.0.5"), want: got("10.0.0.5", "10.0.0.6"),
		},
		{
			name: "one of each family, in the Service's order", pools: []ipam.Pool{p},
			req:  asking(dual(v4("s", "p"), ipam.PreferDualStack, v6f, v4f), "10.0.0.5", "2001:db8::5"),
			want: got("2001:db8::5", "10.0.0.5"),
		},
		{
			name: "the same address twice", pools: []ipam.Pool{p},
			req: asking(v4("s", "p"), "10.0.0.5", "10.0.0.5"), want: got("10.0.0.5"),
		},
		{
			name: "not an address", pools: []ipam.Pool{p},
			req:  with(v4("s", "p"), func(r *ipam.Request) { r.Addresses = []netip.Addr{{}} }),
			want: outcome{Refused: []string{"IPv6: not an IP address"}},
		},
		{
			name: "requested addresses only: nothing automatic", pools: []ipam.Pool{p},
			req:  asking(v4("s", "p"), "192.0.2.1"),
			want: outcome{Refused: []string{"192.0.2.1: no pool holds it"}},
		},
	})
}

// TestPerFamilyLimit: a Service that requests addresses gets the first of each family that
// can be granted, more only from pools that allow more, and keeps what it holds beyond that
// (given before the limit, and restored after a restart).
func TestPerFamilyLimit(t *testing.T) {
	p := pool("p", "10.0.0.0/24", "2001:db8::/64")
	// many is the exploit's shape: one Service listing a whole pool.
	var many []string
	for i := range 64 {
		many = append(many, fmt.Sprintf("10.0.0.%d", i))
	}
	oneV4 := "a Service gets one IPv4 address, and this one holds 10.0.0.0 (pool p allows no more: maxAddressesPerService)"
	manyRefused := make([]string, 0, 63)
	for _, a := range many[1:] {
		manyRefused = append(manyRefused, a+": "+oneV4)
	}
	run(t, []scenario{
		{
			name: "single-stack: the first of 64", pools: []ipam.Pool{p},
			req:   asking(v4("s", "p"), many...),
			want:  outcome{Addresses: []string{"10.0.0.0"}, Refused: manyRefused},
			holds: map[string][]string{"s": {"10.0.0.0"}},
		},
		{
			name: "dual-stack: the first of each family", pools: []ipam.Pool{p},
			req: asking(dual(v4("s", "p"), ipam.RequireDualStack, v4f, v6f),
				"2001:db8::5", "10.0.0.5", "2001:db8::6", "10.0.0.6"),
			want: outcome{Addresses: []string{"10.0.0.5", "2001:db8::5"}, Refused: []string{
				"2001:db8::6: a Service gets one IPv6 address, and this one holds 2001:db8::5",
				"10.0.0.6: a Service gets one IPv4 address, and this one holds 10.0.0.5",
			}},
		},
		{
			name: "the first that can be granted", pools: []ipam.Pool{p},
			before: []ipam.Request{asking(v4("a", "p"), "10.0.0.5")},
			req:    asking(v4("s", "p"), "192.0.2.1", "10.0.0.5", "10.0.0.6", "10.0.0.7"),
			want: outcome{Addresses: []string{"10.0.0.6"}, Refused: []string{
				"192.0.2.1: no pool holds it",
				"10.0.0.5: held by a",
				"10.0.0.7: a Service gets one IPv4 address, and this one holds 10.0.0.6",
			}},
		},
		{
			name: "a pool that allows three", pools: []ipam.Pool{perService(3, p)},
			req: asking(v4("s", "p"), "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"),
			want: outcome{Addresses: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, Refused: []string{
				"10.0.0.4: a Service gets at most 3 IPv4 addresses from pool p (maxAddressesPerService), and this one holds 3",
			}},
		},
		{
			name: "each address's own pool decides", pools: []ipam.Pool{perService(2, pool("two", "10.0.1.0/24")), p},
			req: asking(v4("s", "p", "two"), "10.0.1.1", "10.0.0.1", "10.0.1.2", "10.0.1.3"),
			want: outcome{Addresses: []string{"10.0.1.1", "10.0.1.2"}, Refused: []string{
				"10.0.0.1: a Service gets one IPv4 address, and this one holds 10.0.1.1 (pool p allows no more",
				"10.0.1.3: a Service gets at most 2 IPv4 addresses from pool two (maxAddressesPerService), and this one holds 2",
			}},
		},
		{
			name: "held addresses count: a new one is refused", pools: []ipam.Pool{p},
			before: []ipam.Request{asking(v4("s", "p"), "10.0.0.1")},
			req:    asking(v4("s", "p"), "10.0.0.2", "10.0.0.1"),
			want: outcome{Addresses: []string{"10.0.0.1"}, Refused: []string{
				"10.0.0.2: a Service gets one IPv4 address, and this one holds 10.0.0.1",
			}},
		},
		{
			name: "a held address no longer requested makes room", pools: []ipam.Pool{p},
			before: []ipam.Request{asking(v4("s", "p"), "10.0.0.1")},
			req:    asking(v4("s", "p"), "10.0.0.2", "10.0.0.3"),
			want: outcome{Addresses: []string{"10.0.0.2"},
				Refused:  []string{"10.0.0.3: a Service gets one IPv4 address, and this one holds 10.0.0.2"},
				Released: []string{"10.0.0.1: no longer requested"}},
		},
		{
			name: "held beyond a lowered limit: kept", pools: []ipam.Pool{perService(3, p)},
			before:  []ipam.Request{asking(v4("s", "p"), "10.0.0.1", "10.0.0.2", "10.0.0.3")},
			repools: []ipam.Pool{p},
			req:     asking(v4("s", "p"), "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"),
			want: outcome{Addresses: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, Refused: []string{
				"10.0.0.4: a Service gets one IPv4 address, and this one holds 10.0.0.1",
			}},
		},
		{
			name: "KeepOnly keeps everything held and gives nothing", pools: []ipam.Pool{perService(3, p)},
			before: []ipam.Request{asking(dual(v4("s", "p"), ipam.PreferDualStack, v4f, v6f), "10.0.0.1", "10.0.0.2", "2001:db8::1")},
			req:    with(dual(v4("s", "p"), ipam.PreferDualStack, v4f, v6f), func(r *ipam.Request) { r.KeepOnly = true }),
			want:   got("10.0.0.1", "10.0.0.2", "2001:db8::1"),
		},
		{
			name: "KeepOnly with nothing held: nothing, and no automatic address", pools: []ipam.Pool{p},
			req:   with(v4("s", "p"), func(r *ipam.Request) { r.KeepOnly = true }),
			want:  outcome{},
			holds: map[string][]string{"s": nil},
		},
		{
			name: "KeepOnly still gives up a family the Service dropped", pools: []ipam.Pool{p},
			before: []ipam.Request{asking(dual(v4("s", "p"), ipam.PreferDualStack, v4f, v6f), "10.0.0.1", "2001:db8::1")},
			req:    with(v4("s", "p"), func(r *ipam.Request) { r.KeepOnly = true }),
			want: outcome{Addresses: []string{"10.0.0.1"},
				Released: []string{"2001:db8::1: the Service no longer has the IPv6 family"}},
		},
	})

	// A controller restart: Restore records what the status says, beyond the limit, and the
	// next Assign keeps it all.
	a := ipam.New()
	a.SetPools([]ipam.Pool{p})
	req := asking(v4("s", "p"), many[:20]...)
	if r := a.Restore(req, addrs(many[:20]...)); r != nil {
		t.Fatalf("Restore refused %v", r)
	}
	assign(t, a, req, got(many[:20]...))
	assign(t, a, asking(v4("s", "p"), many[:21]...),
		outcome{Addresses: many[:20], Refused: []string{"10.0.0.20: " + oneV4}})
	// KeepOnly (an unreadable request) after the restart: all kept.
	assign(t, a, with(v4("s", "p"), func(r *ipam.Request) { r.KeepOnly = true }), got(many[:20]...))
	if diff := cmp.Diff(map[string]int{"p/IPv4": 20, "p/IPv6": 0}, used(a)); diff != "" {
		t.Errorf("Used (-want +got):\n%s", diff)
	}
}

func TestSharing(t *testing.T) {
	p := pool("p", "10.0.0.0/24")
	q := pool("q", "10.0.1.0/24")
	run(t, []scenario{
		{
			name: "same key, ports apart: same address", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80)},
			req:    sharing(v4("b", "p"), "k", 443), want: got("10.0.0.0"),
			holds: map[string][]string{"a": {"10.0.0.0"}},
		},
		{
			name: "same port number, other protocol: same address", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 53)},
			req: with(sharing(v4("b", "p"), "k"), func(r *ipam.Request) {
				r.Ports = []ipam.Port{{Protocol: "UDP", Number: 53}}
			}),
			want: got("10.0.0.0"),
		},
		{
			name: "three sharers", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80), sharing(v4("b", "p"), "k", 443)},
			req:    sharing(v4("c", "p"), "k", 8080), want: got("10.0.0.0"),
			holds: map[string][]string{"a": {"10.0.0.0"}, "b": {"10.0.0.0"}},
		},
		{
			name: "the lowest address the Service may share", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80, 443), sharing(v4("b", "p"), "k", 80), sharing(v4("c", "p"), "k", 80, 443)},
			req:    sharing(v4("d", "p"), "k", 443), want: got("10.0.0.1"),
			holds: map[string][]string{"a": {"10.0.0.0"}, "b": {"10.0.0.1"}, "c": {"10.0.0.2"}},
		},
		{
			name: "port collision: another address", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80)},
			req:    sharing(v4("b", "p"), "k", 80), want: got("10.0.0.1"),
		},
		{
			name: "port collision: requested address refused", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80, 443)},
			req:    asking(sharing(v4("b", "p"), "k", 8080, 443), "10.0.0.0"),
			want:   outcome{Refused: []string{"10.0.0.0: port 443/TCP collides with a on the shared address"}},
		},
		{
			name: "other key: another address", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k1", 80)},
			req:    sharing(v4("b", "p"), "k2", 443), want: got("10.0.0.1"),
		},
		{
			name: "other key: requested address refused", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k1", 80)},
			req:    asking(sharing(v4("b", "p"), "k2", 443), "10.0.0.0"),
			want:   outcome{Refused: []string{"10.0.0.0: held by a under another sharing key"}},
		},
		{
			name: "no key: another address", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80)},
			req:    sharing(v4("b", "p"), "", 443), want: got("10.0.0.1"),
		},
		{
			name: "no key: requested address refused", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80)},
			req:    asking(sharing(v4("b", "p"), "", 443), "10.0.0.0"),
			want:   outcome{Refused: []string{"10.0.0.0: held by a, and both need a sharing key to share it"}},
		},
		{
			name: "other externalTrafficPolicy: another address", pools: []ipam.Pool{p},
			before: []ipam.Request{local(sharing(v4("a", "p"), "k", 80))},
			req:    sharing(v4("b", "p"), "k", 443), want: got("10.0.0.1"),
		},
		{
			name: "other externalTrafficPolicy: requested address refused", pools: []ipam.Pool{p},
			before: []ipam.Request{local(sharing(v4("a", "p"), "k", 80))},
			req:    asking(sharing(v4("b", "p"), "k", 443), "10.0.0.0"),
			want:   outcome{Refused: []string{"10.0.0.0: held by a with another externalTrafficPolicy"}},
		},
		{
			name: "both Local: same address", pools: []ipam.Pool{p},
			before: []ipam.Request{local(sharing(v4("a", "p"), "k", 80))},
			req:    local(sharing(v4("b", "p"), "k", 443)), want: got("10.0.0.0"),
		},
		{
			name: "same key, requested: shared", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80)},
			req:    asking(sharing(v4("b", "p"), "k", 443), "10.0.0.0"), want: got("10.0.0.0"),
		},
		{
			name: "the sharer's pool does not serve the Service", pools: []ipam.Pool{p, q},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80)},
			req:    sharing(v4("b", "q"), "k", 443), want: got("10.0.1.0"),
		},
		{
			name: "a sharer's new ports collide: it gives up the shared address", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80), sharing(v4("b", "p"), "k", 443)},
			req:    sharing(v4("a", "p"), "k", 443),
			want: outcome{Addresses: []string{"10.0.0.1"},
				Released: []string{"10.0.0.0: port 443/TCP collides with b on the shared address"}},
			holds: map[string][]string{"b": {"10.0.0.0"}},
		},
		{
			name: "a sharer changes its key: it gives up the shared address", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80), sharing(v4("b", "p"), "k", 443)},
			req:    sharing(v4("a", "p"), "k2", 80),
			want: outcome{Addresses: []string{"10.0.0.1"},
				Released: []string{"10.0.0.0: held by b under another sharing key"}},
			holds: map[string][]string{"b": {"10.0.0.0"}},
		},
		{
			name: "the only holder changes its key: it keeps its address", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80)},
			req:    sharing(v4("a", "p"), "k2", 80), want: got("10.0.0.0"),
		},
		{
			name: "the only holder changed its key: the old key no longer shares", pools: []ipam.Pool{p},
			before: []ipam.Request{sharing(v4("a", "p"), "k", 80), sharing(v4("a", "p"), "k2", 80)},
			req:    sharing(v4("b", "p"), "k", 443), want: got("10.0.0.1"),
		},
		{
			name: "dual-stack sharers share both addresses", pools: []ipam.Pool{pool("ds", "10.0.0.0/24", "2001:db8::/64")},
			before: []ipam.Request{dual(sharing(v4("a", "ds"), "k", 80), ipam.PreferDualStack, v4f, v6f)},
			req:    dual(sharing(v4("b", "ds"), "k", 443), ipam.PreferDualStack, v4f, v6f),
			want:   got("10.0.0.0", "2001:db8::"),
		},
	})
}

// TestSharingRelease: releasing one sharer keeps the address for the other, and only when
// the last one goes is the address free again.
func TestSharingRelease(t *testing.T) {
	a := ipam.New()
	a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/24")})
	ra, rb := sharing(v4("a", "p"), "k", 80), sharing(v4("b", "p"), "k", 443)
	assign(t, a, ra, got("10.0.0.0"))
	assign(t, a, rb, got("10.0.0.0"))
	shared := netip.MustParseAddr("10.0.0.0")
	if diff := cmp.Diff([]string{"a", "b"}, a.Holders(shared)); diff != "" {
		t.Errorf("Holders (-want +got):\n%s", diff)
	}
	a.Release("a")
	holds(t, a, map[string][]string{"a": nil, "b": {"10.0.0.0"}})
	if diff := cmp.Diff([]string{"b"}, a.Holders(shared)); diff != "" {
		t.Errorf("Holders after releasing a (-want +got):\n%s", diff)
	}
	assign(t, a, v4("c", "p"), got("10.0.0.1")) // not free yet
	assign(t, a, rb, got("10.0.0.0"))
	if diff := cmp.Diff(map[string]int{"p/IPv4": 2}, used(a)); diff != "" {
		t.Errorf("Used (-want +got):\n%s", diff)
	}
	a.Release("b")
	if h := a.Holders(shared); h != nil {
		t.Errorf("Holders after releasing both = %v", h)
	}
	assign(t, a, v4("d", "p"), got("10.0.0.0"))
}

func TestDualStack(t *testing.T) {
	p4 := pool("v4", "10.0.0.0/30")
	p6 := pool("v6", "2001:db8::/126")
	ds := pool("ds", "10.0.1.0/30", "2001:db8:1::/126")
	noV6 := "IPv6: no enabled pool with automatic assignment and IPv6 addresses serves this Service"
	run(t, []scenario{
		{
			name: "SingleStack gets its first family", pools: []ipam.Pool{p4, p6},
			req: dual(v4("s", "v4", "v6"), ipam.SingleStack, v6f, v4f), want: got("2001:db8::"),
		},
		{
			name: "SingleStack without families is IPv4", pools: []ipam.Pool{ds},
			req: dual(v4("s", "ds"), ipam.SingleStack), want: got("10.0.1.0"),
		},
		{
			name: "PreferDualStack from one pool", pools: []ipam.Pool{ds},
			req: dual(v4("s", "ds"), ipam.PreferDualStack, v4f, v6f), want: got("10.0.1.0", "2001:db8:1::"),
		},
		{
			name: "PreferDualStack, IPv6 first", pools: []ipam.Pool{ds},
			req: dual(v4("s", "ds"), ipam.PreferDualStack, v6f, v4f), want: got("2001:db8:1::", "10.0.1.0"),
		},
		{
			name: "PreferDualStack, each family from another pool", pools: []ipam.Pool{p4, p6},
			req: dual(v4("s", "v4", "v6"), ipam.PreferDualStack, v4f, v6f), want: got("10.0.0.0", "2001:db8::"),
		},
		{
			name: "PreferDualStack with one family listed (a single-stack cluster) gets that one", pools: []ipam.Pool{p4, p6},
			req: dual(v4("s", "v4", "v6"), ipam.PreferDualStack, v6f), want: got("2001:db8::"),
		},
		{
			name: "PreferDualStack, only IPv4 available", pools: []ipam.Pool{p4, p6},
			req:  dual(v4("s", "v4"), ipam.PreferDualStack, v4f, v6f),
			want: outcome{Addresses: []string{"10.0.0.0"}, Refused: []string{noV6}},
		},
		{
			name: "PreferDualStack, IPv6 pool full", pools: []ipam.Pool{p4, pool("v6", "2001:db8::/128")},
			before: []ipam.Request{dual(v4("x", "v6"), ipam.SingleStack, v6f)},
			req:    dual(v4("s", "v4", "v6"), ipam.PreferDualStack, v4f, v6f),
			want:   outcome{Addresses: []string{"10.0.0.0"}, Refused: []string{"IPv6: no free IPv6 address in pool v6"}},
		},
		{
			name: "RequireDualStack gets both", pools: []ipam.Pool{p4, p6},
			req: dual(v4("s", "v4", "v6"), ipam.RequireDualStack, v4f, v6f), want: got("10.0.0.0", "2001:db8::"),
		},
		{
			name: "RequireDualStack, only IPv4 available: nothing", pools: []ipam.Pool{p4, p6},
			req: dual(v4("s", "v4"), ipam.RequireDualStack, v4f, v6f),
			want: outcome{Refused: []string{noV6,
				"10.0.0.0: not kept: RequireDualStack needs an address of each family"}},
			holds: map[string][]string{"s": nil},
		},
		{
			name: "RequireDualStack, IPv4 pool full: nothing", pools: []ipam.Pool{pool("v4", "10.0.0.0/32"), p6},
			before: []ipam.Request{v4("x", "v4")},
			req:    dual(v4("s", "v4", "v6"), ipam.RequireDualStack, v6f, v4f),
			want: outcome{Refused: []string{"IPv4: no free IPv4 address in pool v4",
				"2001:db8::: not kept: RequireDualStack needs an address of each family"}},
			holds: map[string][]string{"s": nil},
		},
		{
			name: "RequireDualStack, requested addresses of one family: nothing", pools: []ipam.Pool{ds},
			req: asking(dual(v4("s", "ds"), ipam.RequireDualStack, v4f, v6f), "10.0.1.1"),
			want: outcome{Refused: []string{"IPv6: RequireDualStack needs an IPv6 address, and none is requested",
				"10.0.1.1: not kept: RequireDualStack"}},
			holds: map[string][]string{"s": nil},
		},
		{
			name: "RequireDualStack, a requested address refused: nothing", pools: []ipam.Pool{ds},
			req:   asking(dual(v4("s", "ds"), ipam.RequireDualStack, v4f, v6f), "10.0.1.1", "2001:db8:2::1"),
			want:  outcome{Refused: []string{"2001:db8:2::1: no pool holds it", "10.0.1.1: not kept: RequireDualStack"}},
			holds: map[string][]string{"s": nil},
		},
		{
			name: "RequireDualStack, requested addresses of both families", pools: []ipam.Pool{ds},
			req:  asking(dual(v4("s", "ds"), ipam.RequireDualStack, v4f, v6f), "2001:db8:1::2", "10.0.1.1"),
			want: got("10.0.1.1", "2001:db8:1::2"),
		},
		{
			name: "RequireDualStack, a held address loses its partner: nothing", pools: []ipam.Pool{p4, p6},
			before: []ipam.Request{dual(v4("s", "v4", "v6"), ipam.RequireDualStack, v4f, v6f)},
			req:    dual(v4("s", "v4"), ipam.RequireDualStack, v4f, v6f),
			want: outcome{
				Refused:  []string{noV6},
				Released: []string{"2001:db8::: pool v6 does not serve this Service any more", "10.0.0.0: not kept: RequireDualStack"},
			},
			holds: map[string][]string{"s": nil},
		},
		{
			name: "RequireDualStack keeps an orphan", pools: []ipam.Pool{p4, p6},
			before:  []ipam.Request{dual(v4("s", "v4", "v6"), ipam.RequireDualStack, v4f, v6f)},
			repools: []ipam.Pool{p4},
			req:     dual(v4("s", "v4", "v6"), ipam.RequireDualStack, v4f, v6f),
			want:    outcome{Addresses: []string{"10.0.0.0", "2001:db8::"}, Orphans: []string{"2001:db8::"}},
		},
		{
			name: "PreferDualStack to SingleStack gives up the other family", pools: []ipam.Pool{ds},
			before: []ipam.Request{dual(v4("s", "ds"), ipam.PreferDualStack, v4f, v6f)},
			req:    dual(v4("s", "ds"), ipam.SingleStack, v4f, v6f),
			want: outcome{Addresses: []string{"10.0.1.0"},
				Released: []string{"2001:db8:1::: the Service no longer has the IPv6 family"}},
		},
		{
			name: "SingleStack to PreferDualStack keeps the first address", pools: []ipam.Pool{ds},
			before:  []ipam.Request{v4("x", "ds"), v4("s", "ds")},
			release: []string{"x"},
			req:     dual(v4("s", "ds"), ipam.PreferDualStack, v4f, v6f),
			want:    got("10.0.1.1", "2001:db8:1::"),
		},
	})
}

// TestRequireDualStackLeavesNothing: a refused RequireDualStack Service holds nothing
// afterwards, and the address it briefly had is free for the next Service.
func TestRequireDualStackLeavesNothing(t *testing.T) {
	a := ipam.New()
	a.SetPools([]ipam.Pool{pool("v4", "10.0.0.0/30")})
	res := a.Assign(dual(v4("s", "v4"), ipam.RequireDualStack, v4f, v6f))
	if len(res.Addresses) != 0 || len(res.Refused) != 2 {
		t.Errorf("Assign = %+v, want no address and two refusals", outcomeOf(res))
	}
	holds(t, a, map[string][]string{"s": nil})
	if h := a.Holders(netip.MustParseAddr("10.0.0.0")); h != nil {
		t.Errorf("Holders(10.0.0.0) = %v", h)
	}
	if diff := cmp.Diff(map[string]int{"v4/IPv4": 0}, used(a)); diff != "" {
		t.Errorf("Used (-want +got):\n%s", diff)
	}
	assign(t, a, v4("t", "v4"), got("10.0.0.0"))
}

func TestOverlap(t *testing.T) {
	a := pool("a", "10.0.0.0/29", "2001:db8::/125")
	b := pool("b", "10.0.0.4/30")
	c := pool("c", "10.0.1.0/30", "2001:db8::6/127")
	t.Run("status", func(t *testing.T) {
		al := ipam.New()
		al.SetPools([]ipam.Pool{a, b, c, pool("d", "10.0.0.8/30")}) // d touches a: no conflict
		type status struct {
			Conflicts []string
			Total     map[string]string
		}
		got := map[string]status{}
		for _, st := range al.Pools() {
			s := status{Conflicts: st.Conflicts, Total: map[string]string{}}
			for fam, n := range st.Total {
				s.Total[fam.String()] = n.String()
			}
			got[st.Name] = s
		}
		want := map[string]status{
			"a": {Conflicts: []string{"b", "c"}, Total: map[string]string{"IPv4": "4", "IPv6": "6"}},
			"b": {Conflicts: []string{"a"}, Total: map[string]string{"IPv4": "0"}},
			"c": {Conflicts: []string{"a"}, Total: map[string]string{"IPv4": "4", "IPv6": "0"}},
			"d": {Total: map[string]string{"IPv4": "4"}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Pools (-want +got):\n%s", diff)
		}
	})
	run(t, []scenario{
		{
			name: "the rest of an overlapping pool still works", pools: []ipam.Pool{a, b},
			before: []ipam.Request{v4("s1", "a", "b"), v4("s2", "a", "b"), v4("s3", "a", "b")},
			req:    v4("s4", "a", "b"), want: got("10.0.0.3"),
		},
		{
			name: "the overlapping part is handed out by neither", pools: []ipam.Pool{a, b},
			before: []ipam.Request{v4("s1", "a", "b"), v4("s2", "a", "b"), v4("s3", "a", "b"), v4("s4", "a", "b")},
			req:    v4("s5", "a", "b"),
			want:   outcome{Refused: []string{"IPv4: no free IPv4 address in pool a"}},
		},
		{
			name: "a pool entirely in conflict hands out nothing", pools: []ipam.Pool{a, b},
			req:  v4("s", "b"),
			want: outcome{Refused: []string{"IPv4: no enabled pool with automatic assignment and IPv4 addresses serves this Service"}},
		},
		{
			name: "IPv6 overlap", pools: []ipam.Pool{a, c},
			before: []ipam.Request{
				dual(v4("s1", "a"), ipam.SingleStack, v6f), dual(v4("s2", "a"), ipam.SingleStack, v6f),
				dual(v4("s3", "a"), ipam.SingleStack, v6f), dual(v4("s4", "a"), ipam.SingleStack, v6f),
				dual(v4("s5", "a"), ipam.SingleStack, v6f),
			},
			req: dual(v4("s6", "a"), ipam.SingleStack, v6f), want: got("2001:db8::5"),
		},
		{
			name: "a requested address in the overlap is refused", pools: []ipam.Pool{a, b},
			req:  asking(v4("s", "a", "b"), "10.0.0.6"),
			want: outcome{Refused: []string{"10.0.0.6: it lies where pools a and b overlap, and neither hands it out"}},
		},
		{
			name: "an address held in what becomes an overlap is kept", pools: []ipam.Pool{a},
			before:  []ipam.Request{asking(v4("s", "a"), "10.0.0.6")},
			repools: []ipam.Pool{a, b},
			req:     asking(v4("s", "a"), "10.0.0.6"), want: got("10.0.0.6"),
		},
		{
			name: "an automatic address held in what becomes an overlap is kept", pools: []ipam.Pool{pool("a", "10.0.0.4/30")},
			before:  []ipam.Request{v4("s", "a")},
			repools: []ipam.Pool{a, b},
			req:     v4("s", "a"), want: got("10.0.0.4"),
		},
		{
			name: "an invalid pool overlaps nothing", pools: []ipam.Pool{a, pool("bad", "10.0.0.7-10.0.0.4")},
			req: asking(v4("s", "a"), "10.0.0.6"), want: got("10.0.0.6"),
		},
	})
	t.Run("held in the overlap: not counted, and refused once released", func(t *testing.T) {
		al := ipam.New()
		al.SetPools([]ipam.Pool{a})
		assign(t, al, asking(v4("s", "a"), "10.0.0.6"), got("10.0.0.6"))
		al.SetPools([]ipam.Pool{a, b})
		if diff := cmp.Diff(map[string]int{"a/IPv4": 0, "a/IPv6": 0, "b/IPv4": 0}, used(al)); diff != "" {
			t.Errorf("Used (-want +got):\n%s", diff)
		}
		al.Release("s")
		assign(t, al, asking(v4("t", "a"), "10.0.0.6"),
			outcome{Refused: []string{"10.0.0.6: it lies where pools a and b overlap"}})
	})
}

func TestPoolErrors(t *testing.T) {
	al := ipam.New()
	al.SetPools([]ipam.Pool{
		pool("ok", "10.0.0.0/30"),
		pool("backwards", "10.0.1.7-10.0.1.4"),
		{Name: "empty", AutoAssign: true},
		pool("twice", "10.0.2.0/30"),
		pool("twice", "10.0.3.0/30"),
	})
	got := map[string]string{}
	for _, st := range al.Pools() {
		got[st.Name] = errString(st.Err)
	}
	want := map[string]string{
		"ok":        "",
		"backwards": "range 10.0.1.7-10.0.1.4: start is above stop",
		"empty":     "pool has no addresses",
		"twice":     `more than one pool is named "twice"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Pools errors (-want +got):\n%s", diff)
	}
	assign(t, al, v4("s", "twice", "backwards", "empty"), outcome{Refused: []string{"IPv4: no enabled pool"}})
	assign(t, al, asking(v4("s", "twice"), "10.0.2.1"), outcome{Refused: []string{"10.0.2.1: no pool holds it"}})
}

func TestStability(t *testing.T) {
	p := pool("p", "10.0.0.0/24", "2001:db8::/64")
	t.Run("releasing another Service moves nothing", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{p})
		assign(t, a, v4("a", "p"), got("10.0.0.0"))
		assign(t, a, v4("b", "p"), got("10.0.0.1"))
		assign(t, a, v4("c", "p"), got("10.0.0.2"))
		a.Release("b")
		holds(t, a, map[string][]string{"a": {"10.0.0.0"}, "b": nil, "c": {"10.0.0.2"}})
		assign(t, a, v4("a", "p"), got("10.0.0.0"))
		assign(t, a, v4("c", "p"), got("10.0.0.2"))
	})
	t.Run("the same request twice gives the same addresses", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{p})
		assign(t, a, v4("x", "p"), got("10.0.0.0"))
		req := dual(sharing(v4("s", "p"), "k", 80), ipam.PreferDualStack, v6f, v4f)
		first := assign(t, a, req, got("2001:db8::", "10.0.0.1"))
		if diff := cmp.Diff(outcomeOf(first), outcomeOf(a.Assign(req))); diff != "" {
			t.Errorf("second Assign (-want +got):\n%s", diff)
		}
	})
	t.Run("Restore then Assign keeps restored addresses", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{p})
		x := v4("x", "p")
		y := dual(v4("y", "p"), ipam.PreferDualStack, v4f, v6f)
		for req, as := range map[*ipam.Request][]netip.Addr{&x: addrs("10.0.0.7"), &y: addrs("10.0.0.0", "2001:db8::9")} {
			if r := a.Restore(*req, as); r != nil {
				t.Fatalf("Restore(%s) refused %v", req.Service, r)
			}
		}
		if r := a.Restore(x, addrs("10.0.0.7", "10.0.0.7")); r != nil { // again: nothing changes
			t.Fatalf("Restore(x) again refused %v", r)
		}
		holds(t, a, map[string][]string{"x": {"10.0.0.7"}, "y": {"10.0.0.0", "2001:db8::9"}})
		assign(t, a, v4("z", "p"), got("10.0.0.1"))
		assign(t, a, x, got("10.0.0.7"))
		assign(t, a, y, got("10.0.0.0", "2001:db8::9"))
		assign(t, a, dual(v4("w", "p"), ipam.SingleStack, v6f), got("2001:db8::"))
	})
	t.Run("Restore refuses an address held by a Service it may not share with", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{p})
		if r := a.Restore(sharing(v4("a", "p"), "k", 80), addrs("10.0.0.5")); r != nil {
			t.Fatalf("Restore(a) refused %v", r)
		}
		if r := a.Restore(sharing(v4("b", "p"), "k", 443), addrs("10.0.0.5")); r != nil {
			t.Fatalf("Restore(b) refused %v", r)
		}
		r := a.Restore(sharing(v4("c", "p"), "k", 80), addrs("10.0.0.5", "10.0.0.6"))
		want := []string{"10.0.0.5: port 80/TCP collides with a"}
		if diff := cmp.Diff(want, matchRefusals(want, strs(r))); diff != "" {
			t.Errorf("Restore(c) (-want +got):\n%s", diff)
		}
		holds(t, a, map[string][]string{"a": {"10.0.0.5"}, "b": {"10.0.0.5"}, "c": {"10.0.0.6"}})
		r = a.Restore(v4("d", "p"), []netip.Addr{{}})
		if len(r) != 1 || r[0].Reason != "not an IP address" {
			t.Errorf("Restore(invalid) = %v", r)
		}
	})
	t.Run("a deleted pool leaves orphans", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{p})
		assign(t, a, v4("x", "p"), got("10.0.0.0"))
		a.SetPools(nil)
		assign(t, a, v4("x", "p"), outcome{Addresses: []string{"10.0.0.0"}, Orphans: []string{"10.0.0.0"}})
		a.SetPools([]ipam.Pool{p})
		assign(t, a, v4("y", "p"), got("10.0.0.1"))
		assign(t, a, v4("x", "p"), got("10.0.0.0"))
	})
	t.Run("a shrunk pool leaves orphans", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/29")})
		assign(t, a, asking(v4("x", "p"), "10.0.0.5"), got("10.0.0.5"))
		assign(t, a, v4("y", "p"), got("10.0.0.0"))
		a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/30")})
		assign(t, a, asking(v4("x", "p"), "10.0.0.5"), outcome{Addresses: []string{"10.0.0.5"}, Orphans: []string{"10.0.0.5"}})
		assign(t, a, v4("x2", "p"), got("10.0.0.1"))
		assign(t, a, v4("y", "p"), got("10.0.0.0"))
		if diff := cmp.Diff(map[string]int{"p/IPv4": 2}, used(a)); diff != "" {
			t.Errorf("Used (-want +got):\n%s", diff)
		}
	})
	t.Run("a pool that stops serving the Service releases its address", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("a", "10.0.0.0/30"), pool("b", "10.0.1.0/30")})
		assign(t, a, v4("x", "a"), got("10.0.0.0"))
		assign(t, a, v4("x", "b"), outcome{Addresses: []string{"10.0.1.0"},
			Released: []string{"10.0.0.0: pool a does not serve this Service any more"}})
		assign(t, a, v4("y", "a"), got("10.0.0.0"))
	})
	t.Run("an unrelated pool change moves nothing", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("a", "10.0.0.0/30")})
		assign(t, a, v4("x", "a"), got("10.0.0.0"))
		assign(t, a, v4("y", "a"), got("10.0.0.1"))
		a.Release("x")
		a.SetPools([]ipam.Pool{pool("a", "10.0.0.0/29"), pool("b", "10.0.1.0/30")})
		assign(t, a, v4("y", "a"), got("10.0.0.1"))
		assign(t, a, v4("z", "a"), got("10.0.0.0"))
		assign(t, a, v4("w", "a"), got("10.0.0.2"))
	})
}

func TestReleaseReuse(t *testing.T) {
	t.Run("lowest released address first", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/24")})
		for i, svc := range []string{"a", "b", "c", "d"} {
			assign(t, a, v4(svc, "p"), got("10.0.0."+string(rune('0'+i))))
		}
		a.Release("c")
		a.Release("b")
		assign(t, a, v4("e", "p"), got("10.0.0.1"))
		assign(t, a, v4("f", "p"), got("10.0.0.2"))
		assign(t, a, v4("g", "p"), got("10.0.0.4"))
	})
	t.Run("across ranges", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("p", "10.0.1.0/31", "10.0.0.0/31")})
		for _, want := range []string{"10.0.0.0", "10.0.0.1", "10.0.1.0"} {
			assign(t, a, v4("s"+want, "p"), got(want))
		}
		a.Release("s10.0.0.1")
		assign(t, a, v4("x", "p"), got("10.0.0.1"))
		assign(t, a, v4("y", "p"), got("10.0.1.1"))
		assign(t, a, v4("z", "p"), outcome{Refused: []string{"IPv4: no free IPv4 address in pool p"}})
		a.Release("s10.0.1.0")
		assign(t, a, v4("z", "p"), got("10.0.1.0"))
	})
	t.Run("a dual-stack Service's release frees both addresses", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/30", "2001:db8::/126")})
		req := dual(v4("s", "p"), ipam.PreferDualStack, v4f, v6f)
		assign(t, a, req, got("10.0.0.0", "2001:db8::"))
		a.Release("s")
		for _, addr := range addrs("10.0.0.0", "2001:db8::") {
			if h := a.Holders(addr); h != nil {
				t.Errorf("Holders(%s) = %v after Release", addr, h)
			}
		}
		if diff := cmp.Diff(map[string]int{"p/IPv4": 0, "p/IPv6": 0}, used(a)); diff != "" {
			t.Errorf("Used (-want +got):\n%s", diff)
		}
		assign(t, a, dual(v4("t", "p"), ipam.PreferDualStack, v6f, v4f), got("2001:db8::", "10.0.0.0"))
	})
	t.Run("a released address requested since is not handed out", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/24")})
		assign(t, a, v4("a", "p"), got("10.0.0.0"))
		assign(t, a, v4("b", "p"), got("10.0.0.1"))
		a.Release("a")
		assign(t, a, asking(v4("c", "p"), "10.0.0.0"), got("10.0.0.0"))
		if r := a.Restore(v4("d", "p"), addrs("10.0.0.2")); r != nil {
			t.Fatal(r)
		}
		assign(t, a, v4("e", "p"), got("10.0.0.3"))
	})
	t.Run("after a restart", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/24")})
		a.Restore(v4("a", "p"), addrs("10.0.0.0"))
		a.Restore(v4("d", "p"), addrs("10.0.0.3"))
		assign(t, a, v4("e", "p"), got("10.0.0.1"))
		assign(t, a, v4("f", "p"), got("10.0.0.2"))
		assign(t, a, v4("g", "p"), got("10.0.0.4"))
	})
	t.Run("many released addresses all come back, lowest first", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/24")})
		const n = 200 // enough for the heap of released addresses to be swept a few times
		for i := range n {
			a.Assign(v4(fmt.Sprint("s", i), "p"))
		}
		for i := n - 1; i >= 0; i-- { // highest first: the heap has to reorder them
			a.Release(fmt.Sprint("s", i))
		}
		for i := range n + 1 {
			assign(t, a, v4(fmt.Sprint("t", i), "p"), got(fmt.Sprint("10.0.0.", i)))
		}
	})
	t.Run("requesting and releasing one address does not grow the free list", func(t *testing.T) {
		a := ipam.New()
		a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/24")})
		for i := range 10 {
			a.Assign(v4("s"+string(rune('0'+i)), "p"))
		}
		a.Release("s3")
		for range 1000 {
			assign(t, a, asking(v4("x", "p"), "10.0.0.3"), got("10.0.0.3"))
			a.Release("x")
		}
		if n := ipam.ReleasedLen(a, "p", ipam.IPv4); n > 128 {
			t.Errorf("the heap of released addresses has %d entries for 1 free address", n)
		}
		assign(t, a, v4("y", "p"), got("10.0.0.3"))
		assign(t, a, v4("z", "p"), got("10.0.0.10"))
	})
}

func TestHoldsAndHolders(t *testing.T) {
	a := ipam.New()
	a.SetPools([]ipam.Pool{pool("p", "10.0.0.0/24")})
	if a.Holds("nobody") != nil || a.Holders(netip.MustParseAddr("10.0.0.0")) != nil {
		t.Error("an empty allocator holds something")
	}
	a.Release("nobody") // no-op
	assign(t, a, sharing(v4("b", "p"), "k", 1), got("10.0.0.0"))
	assign(t, a, sharing(v4("a", "p"), "k", 2), got("10.0.0.0"))
	if diff := cmp.Diff([]string{"a", "b"}, a.Holders(netip.MustParseAddr("10.0.0.0"))); diff != "" {
		t.Errorf("Holders (-want +got):\n%s", diff)
	}
	h := a.Holds("a")
	h[0] = netip.MustParseAddr("10.9.9.9") // a copy
	holds(t, a, map[string][]string{"a": {"10.0.0.0"}})
	if _, ok := a.Pool("nope"); ok {
		t.Error("Pool(nope) exists")
	}
}
