package ipam_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

// rng parses "10.0.0.0/24" (a prefix) or "10.0.0.1-10.0.0.9" (a range) or "10.0.0.1".
func rng(s string) ipam.Range {
	if strings.Contains(s, "/") {
		return ipam.PrefixRange(netip.MustParsePrefix(s))
	}
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		to = from
	}
	return ipam.Range{From: netip.MustParseAddr(from), To: netip.MustParseAddr(to)}
}

// pool is an enabled pool with automatic assignment, priority 0.
func pool(name string, ranges ...string) ipam.Pool {
	p := ipam.Pool{Name: name, AutoAssign: true}
	for _, r := range ranges {
		p.Ranges = append(p.Ranges, rng(r))
	}
	return p
}

func manual(p ipam.Pool) ipam.Pool      { p.AutoAssign = false; return p }
func disabled(p ipam.Pool) ipam.Pool    { p.Disabled = true; return p }
func avoidBuggy(p ipam.Pool) ipam.Pool  { p.AvoidBuggyIPs = true; return p }
func prio(n int, p ipam.Pool) ipam.Pool { p.Priority = n; return p }

// perService lets a Service hold n requested addresses of a family from p.
func perService(n int, p ipam.Pool) ipam.Pool { p.MaxPerService = n; return p }

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func strs[T interface{ String() string }](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.String())
	}
	return out
}

// v4 is a single-stack IPv4 request from pools.
func v4(svc string, pools ...string) ipam.Request {
	return ipam.Request{Service: svc, Families: []ipam.Family{ipam.IPv4}, Pools: pools}
}

// outcome is a Result in strings. Refusals read "address-or-family: reason"; a wanted reason
// need only be part of the one got (see match).
type outcome struct {
	Addresses []string
	Refused   []string
	Released  []string
	Orphans   []string
}

func outcomeOf(r ipam.Result) outcome {
	return outcome{Addresses: strs(r.Addresses), Refused: strs(r.Refused), Released: strs(r.Released), Orphans: strs(r.Orphans)}
}

// match replaces each refusal got whose subject equals the wanted one's and whose reason
// contains the wanted reason by the wanted text, so that cmp.Diff shows only real
// differences.
func (o outcome) match(want outcome) outcome {
	o.Refused = matchRefusals(want.Refused, o.Refused)
	o.Released = matchRefusals(want.Released, o.Released)
	return o
}

func matchRefusals(want, got []string) []string {
	out := append([]string(nil), got...)
	for i := range min(len(want), len(got)) {
		ws, wr, _ := strings.Cut(want[i], ": ")
		gs, gr, _ := strings.Cut(got[i], ": ")
		if ws == gs && strings.Contains(gr, wr) {
			out[i] = want[i]
		}
	}
	return out
}

// assign runs a.Assign and checks the outcome.
func assign(t *testing.T, a *ipam.Allocator, req ipam.Request, want outcome) ipam.Result {
	t.Helper()
	res := a.Assign(req)
	if diff := cmp.Diff(want, outcomeOf(res).match(want)); diff != "" {
		t.Errorf("Assign(%s) (-want +got):\n%s", req.Service, diff)
	}
	return res
}

// got is an outcome that holds addresses and nothing else.
func got(ss ...string) outcome { return outcome{Addresses: ss} }

// holds checks what each Service holds.
func holds(t *testing.T, a *ipam.Allocator, want map[string][]string) {
	t.Helper()
	g := map[string][]string{}
	for svc := range want {
		g[svc] = strs(a.Holds(svc))
	}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("Holds (-want +got):\n%s", diff)
	}
}

// used is every pool's Used, as "pool/family" -> count.
func used(a *ipam.Allocator) map[string]int {
	out := map[string]int{}
	for _, st := range a.Pools() {
		for fam, n := range st.Used {
			out[st.Name+"/"+fam.String()] = n
		}
	}
	return out
}
