package l2_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/ferrolb/ferrolb/internal/l2"
)

func addrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	a := netip.MustParseAddr("10.0.0.0")
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

func nodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i)
	}
	return out
}

func TestAnnouncerNoNodes(t *testing.T) {
	if n, ok := l2.Announcer(netip.MustParseAddr("10.0.0.1"), nil); ok {
		t.Errorf("Announcer with no nodes = %q, true; want none", n)
	}
}

// Every speaker must reach the same answer whatever order it lists the nodes in.
func TestAnnouncerIgnoresOrder(t *testing.T) {
	ns := nodes(7)
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, a := range append(addrs(500), netip.MustParseAddr("2001:db8::1")) {
		want, _ := l2.Announcer(a, ns)
		shuffled := slices.Clone(ns)
		rnd.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		shuffled = append(shuffled, shuffled[0]) // a duplicate changes nothing
		if got, _ := l2.Announcer(a, shuffled); got != want {
			t.Fatalf("Announcer(%s) = %s with nodes %v, %s with %v", a, got, shuffled, want, ns)
		}
	}
}

// Addresses spread evenly over nodes: within 10% of the fair share over 30,000 addresses.
func TestAnnouncerBalance(t *testing.T) {
	for _, n := range []int{2, 3, 10} {
		ns := nodes(n)
		count := map[string]int{}
		as := addrs(30000)
		for _, a := range as {
			w, _ := l2.Announcer(a, ns)
			count[w]++
		}
		fair := float64(len(as)) / float64(n)
		for _, node := range ns {
			if d := float64(count[node])/fair - 1; d > 0.1 || d < -0.1 {
				t.Errorf("%d nodes: %s announces %d addresses, fair share %.0f", n, node, count[node], fair)
			}
		}
	}
}

// When a node leaves, only its addresses move; when one joins, only the addresses it wins
// move, and they move to it.
func TestAnnouncerMinimalDisruption(t *testing.T) {
	ns := nodes(5)
	as := addrs(10000)
	before := map[netip.Addr]string{}
	for _, a := range as {
		before[a], _ = l2.Announcer(a, ns)
	}
	gone := "node-2"
	rest := slices.DeleteFunc(slices.Clone(ns), func(n string) bool { return n == gone })
	for _, a := range as {
		after, _ := l2.Announcer(a, rest)
		if before[a] != gone && after != before[a] {
			t.Fatalf("%s moved from %s to %s when %s left", a, before[a], after, gone)
		}
	}
	joined := append(slices.Clone(ns), "node-new")
	moved := 0
	for _, a := range as {
		after, _ := l2.Announcer(a, joined)
		if after != before[a] {
			if after != "node-new" {
				t.Fatalf("%s moved from %s to %s when node-new joined", a, before[a], after)
			}
			moved++
		}
	}
	if share := float64(moved) / float64(len(as)); share < 0.12 || share > 0.22 {
		t.Errorf("node-new took %.1f%% of addresses, want about 1/6", 100*share)
	}
}

var sink string

func BenchmarkAnnouncer(b *testing.B) {
	ns := nodes(100)
	a := netip.MustParseAddr("2001:db8::1")
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = l2.Announcer(a, ns)
	}
}
