package maglev_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		backends []maglev.Backend
		want     error
		wantText string // a part of the message: the offending value
	}{
		{"size zero", 0, equalBackends(3), maglev.ErrInvalidSize, "size 0"},
		{"size negative", -65537, equalBackends(3), maglev.ErrInvalidSize, "size -65537"},
		{"size prime but too small", 13, equalBackends(3), maglev.ErrInvalidSize, "size 13: below the minimum 251"},
		{"size not prime", 65536, equalBackends(3), maglev.ErrInvalidSize, "size 65536: not prime (try 65521 or 65537)"},
		{"size not prime, odd", 1001, equalBackends(3), maglev.ErrInvalidSize, "size 1001: not prime (try 997 or 1009)"},
		{"size not prime, at the maximum", maglev.MaxSize, equalBackends(3), maglev.ErrInvalidSize, "size 16777216: not prime (try 16777213)"},
		{"size square of a prime", 257 * 257, equalBackends(3), maglev.ErrInvalidSize, "size 66049: not prime"},
		{"size prime but too large", 16777259, equalBackends(3), maglev.ErrInvalidSize, "size 16777259: above the maximum"},
		{"no backends", maglev.DefaultSize, nil, maglev.ErrNoBackends, "0 backends given"},
		{"empty backends", maglev.SmallSize, []maglev.Backend{}, maglev.ErrNoBackends, "0 backends given"},
		{"all weights zero", maglev.DefaultSize, []maglev.Backend{{"b", 0}, {"a", 0}}, maglev.ErrNoBackends, "2 backends given"},
		{"duplicate name", maglev.DefaultSize, []maglev.Backend{{"10.0.0.1:80", 1}, {"10.0.0.2:80", 1}, {"10.0.0.1:80", 3}}, maglev.ErrDuplicateName, `"10.0.0.1:80"`},
		{"duplicate name of weight zero", maglev.DefaultSize, []maglev.Backend{{"x", 0}, {"y", 1}, {"x", 0}}, maglev.ErrDuplicateName, `"x"`},
		{"more backends than entries", maglev.SmallSize, equalBackends(252), maglev.ErrTooManyBackends, "252 backends with a weight above zero, table size 251"},
		{"invalid size reported first", 100, []maglev.Backend{{"x", 1}, {"x", 1}}, maglev.ErrInvalidSize, "size 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table, err := maglev.Build(tt.size, tt.backends)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Build(%d, …) error = %v, want %v", tt.size, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Build(%d, …) error %q does not contain %q", tt.size, err, tt.wantText)
			}
			if table.Entries != nil || table.Backends != nil {
				t.Errorf("Build(%d, …) returned a table with its error: %+v", tt.size, table)
			}
		})
	}
}

func TestBuildSmallCases(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		backends []maglev.Backend
		// wantOwners counts the entries of each backend, by name.
		wantOwners map[string]int
	}{
		{"one backend owns every entry", maglev.DefaultSize, []maglev.Backend{{"10.0.0.1:80", 1}},
			map[string]int{"10.0.0.1:80": maglev.DefaultSize}},
		{"one backend, any weight", maglev.SmallSize, []maglev.Backend{{"a", 1<<32 - 1}},
			map[string]int{"a": maglev.SmallSize}},
		{"one backend among drained ones", maglev.SmallSize, []maglev.Backend{{"c", 0}, {"b", 5}, {"a", 0}},
			map[string]int{"b": maglev.SmallSize}},
		{"as many backends as entries: one each", maglev.SmallSize, equalBackends(maglev.SmallSize),
			func() map[string]int {
				m := make(map[string]int)
				for _, b := range equalBackends(maglev.SmallSize) {
					m[b.Name] = 1
				}
				return m
			}()},
		{"two backends, weights 2 and 1", maglev.SmallSize, []maglev.Backend{{"a", 1}, {"b", 2}},
			map[string]int{"a": 84, "b": 167}},
		{"empty name is a name", maglev.SmallSize, []maglev.Backend{{"", 1}, {"a", 1}},
			map[string]int{"": 126, "a": 125}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := mustBuild(t, tt.size, tt.backends)
			if len(table.Entries) != tt.size {
				t.Fatalf("len(Entries) = %d, want %d", len(table.Entries), tt.size)
			}
			if diff := cmp.Diff(tt.wantOwners, ownerCounts(table)); diff != "" {
				t.Errorf("entries per backend (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBackendOrder checks the order the datapath relies on: Backends sorted by name, with
// every backend given (weight 0 included) and nothing else, no entry for weight 0, and the
// input left alone.
func TestBackendOrder(t *testing.T) {
	in := []maglev.Backend{{"10.0.0.3:80", 1}, {"10.0.0.10:80", 0}, {"10.0.0.1:80", 2}, {"10.0.0.2:80", 1}}
	inCopy := slices.Clone(in)
	table := mustBuild(t, maglev.SmallSize, in)
	// Byte-wise, not numeric: '0' sorts before ':'.
	want := []maglev.Backend{{"10.0.0.10:80", 0}, {"10.0.0.1:80", 2}, {"10.0.0.2:80", 1}, {"10.0.0.3:80", 1}}
	if diff := cmp.Diff(want, table.Backends); diff != "" {
		t.Errorf("Backends (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(inCopy, in); diff != "" {
		t.Errorf("Build modified its input (-want +got):\n%s", diff)
	}
	for e, i := range table.Entries {
		if table.Backends[i].Weight == 0 {
			t.Fatalf("entry %d belongs to %q, of weight 0", e, table.Backends[i].Name)
		}
	}
}

// TestDeterministic checks that the order in which backends are given does not matter.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	backends := randomWeights(200, 4)
	want := mustBuild(t, maglev.DefaultSize, backends)
	for range 5 {
		shuffled := slices.Clone(backends)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := mustBuild(t, maglev.DefaultSize, shuffled)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Build of shuffled backends differs (-want +got):\n%s", diff)
		}
	}
}

// TestBalance checks requirement (a): with equal weights the backends own the same number of
// entries. Pseudocode 1 gives every backend one turn per round and every turn claims one
// entry, so the counts differ by at most one entry, whatever the hashes: the paper's M > 100*N
// rule (section 3.4) is exactly what keeps that one entry under 1% of a backend's share. For
// N = 1000 at M = 65537 the rule does not hold (M/N is about 65.5) and max/min is 66/65, 1.5%:
// the test checks the one-entry bound and reports the ratio.
func TestBalance(t *testing.T) {
	for _, tt := range []struct {
		n        int
		maxRatio float64 // largest allowed max/min
	}{
		{10, 1.01},
		{100, 1.01},
		{1000, 1.016},
	} {
		t.Run(fmt.Sprintf("N=%d", tt.n), func(t *testing.T) {
			table := mustBuild(t, maglev.DefaultSize, equalBackends(tt.n))
			counts := ownerCounts(table)
			if len(counts) != tt.n {
				t.Fatalf("%d backends own entries, want %d", len(counts), tt.n)
			}
			lo, hi := minMax(counts)
			ratio := float64(hi) / float64(lo)
			t.Logf("M=%d N=%d: entries per backend min %d max %d, max/min %.4f", maglev.DefaultSize, tt.n, lo, hi, ratio)
			if hi-lo > 1 {
				t.Errorf("entries per backend from %d to %d, want a difference of at most 1", lo, hi)
			}
			if ratio > tt.maxRatio {
				t.Errorf("max/min = %.4f, want at most %.4f", ratio, tt.maxRatio)
			}
		})
	}
}

// TestDisruption checks requirement (b): removing one of N backends moves its own entries
// and few others. Maglev does not promise that no other entry moves: once the removed
// backend's turns are gone, a backend's later turns can land on entries that another backend
// claimed before, and the paper measures this churn (section 5.3, Figure 12) rather than
// ruling it out. The test measures, for every removed backend (or a sample for N = 1000):
//
//   - removed: the share of the entries the removed backend owned, about 1/N, which all move;
//   - collateral: the share of the other entries whose owner changed.
func TestDisruption(t *testing.T) {
	for _, tt := range []struct {
		n             int
		sample        int     // how many backends to remove, one at a time, spread over the set
		maxCollateral float64 // largest allowed collateral share, for any removed backend
	}{
		{10, 10, 0.01},
		{100, 100, 0.02},
		{1000, 20, 0.02},
	} {
		t.Run(fmt.Sprintf("N=%d", tt.n), func(t *testing.T) {
			backends := equalBackends(tt.n)
			before := mustBuild(t, maglev.DefaultSize, backends)
			beforeOwners := owners(before)
			var sumRemoved, sumCollateral, worstCollateral float64
			for s := range tt.sample {
				r := s * tt.n / tt.sample
				gone := backends[r].Name
				after := mustBuild(t, maglev.DefaultSize, slices.Delete(slices.Clone(backends), r, r+1))
				afterOwners := owners(after)
				var removed, kept, collateral int
				for e, was := range beforeOwners {
					switch {
					case was == gone:
						removed++
						if afterOwners[e] == gone {
							t.Fatalf("entry %d still belongs to removed backend %q", e, gone)
						}
					case afterOwners[e] != was:
						collateral++
						kept++
					default:
						kept++
					}
				}
				share := float64(collateral) / float64(kept)
				sumRemoved += float64(removed) / float64(maglev.DefaultSize)
				sumCollateral += share
				worstCollateral = max(worstCollateral, share)
				if share > tt.maxCollateral {
					t.Errorf("removing %q changed the owner of %d of the %d entries of other backends (%.2f%%), want at most %.2f%%",
						gone, collateral, kept, 100*share, 100*tt.maxCollateral)
				}
			}
			t.Logf("M=%d N=%d, %d removals: removed backend owned %.3f%% of entries (1/N = %.3f%%); other entries that changed owner: mean %.3f%%, worst %.3f%%",
				maglev.DefaultSize, tt.n, tt.sample, 100*sumRemoved/float64(tt.sample), 100/float64(tt.n),
				100*sumCollateral/float64(tt.sample), 100*worstCollateral)
		})
	}
}

// TestDrainedIsRemoved checks that weight 0 and absence give the same owners: draining a
// backend (weight 0, still listed) moves exactly the flows that removing it would.
func TestDrainedIsRemoved(t *testing.T) {
	backends := randomWeights(50, 3)
	drained := slices.Clone(backends)
	drained[17].Weight = 0
	removed := slices.Delete(slices.Clone(backends), 17, 18)
	a := mustBuild(t, maglev.DefaultSize, drained)
	b := mustBuild(t, maglev.DefaultSize, removed)
	if diff := cmp.Diff(owners(b), owners(a)); diff != "" {
		t.Errorf("owners with a drained backend differ from owners without it (-removed +drained):\n%s", diff)
	}
	if len(a.Backends) != 50 || len(b.Backends) != 49 {
		t.Errorf("len(Backends) = %d and %d, want 50 and 49", len(a.Backends), len(b.Backends))
	}
}

// TestWeights checks requirement (c): entries are proportional to weights. Every turn claims
// one entry, so a backend of weight w owns M*w/W entries (W the sum), off by less than
// 1 + N*w/W (see the package documentation); the test checks that bound and, for the cases
// of the issue, the ratio to within 1%.
func TestWeights(t *testing.T) {
	tests := []struct {
		name     string
		backends []maglev.Backend
	}{
		{"one of 10 has weight 2", withWeights(equalBackends(10), map[int]uint32{3: 2})},
		{"half of 100 have weight 2", withWeights(equalBackends(100), func() map[int]uint32 {
			m := make(map[int]uint32)
			for i := 0; i < 100; i += 2 {
				m[i] = 2
			}
			return m
		}())},
		{"weights 1 to 10", func() []maglev.Backend {
			b := equalBackends(10)
			for i := range b {
				b[i].Weight = uint32(i + 1)
			}
			return b
		}()},
		{"random weights 1 to 100", randomWeights(300, 100)},
		{"one weight dwarfs the others", oneHeavy(100)},
		{"large weights", withWeights(equalBackends(10), map[int]uint32{0: 1<<32 - 1, 1: 1<<31 + 7, 2: 1 << 30})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := mustBuild(t, maglev.DefaultSize, tt.backends)
			counts := ownerCounts(table)
			var total float64
			for _, b := range tt.backends {
				total += float64(b.Weight)
			}
			n := float64(len(tt.backends))
			var worst float64
			for _, b := range tt.backends {
				share := float64(b.Weight) / total
				want := float64(maglev.DefaultSize) * share
				dev := float64(counts[b.Name]) - want
				if abs(dev) >= 1+n*share {
					t.Errorf("%q (weight %d) owns %d entries, want %.2f ± %.2f", b.Name, b.Weight, counts[b.Name], want, 1+n*share)
				}
				if want >= 100 {
					worst = max(worst, abs(dev)/want)
				}
			}
			t.Logf("largest deviation from M*w/W among backends due 100 entries or more: %.3f%%", 100*worst)
			if worst > 0.01 {
				t.Errorf("a backend is %.3f%% away from its share, want at most 1%%", 100*worst)
			}
		})
	}
	t.Run("weight 2 gets twice weight 1", func(t *testing.T) {
		table := mustBuild(t, maglev.DefaultSize, withWeights(equalBackends(10), map[int]uint32{3: 2}))
		counts := ownerCounts(table)
		heavy := float64(counts[backendName(3)])
		var light float64
		for i := range 10 {
			if i != 3 {
				light += float64(counts[backendName(i)]) / 9
			}
		}
		t.Logf("weight 2: %.0f entries, weight 1: %.1f on average, ratio %.4f", heavy, light, heavy/light)
		if r := heavy / light; r < 1.99 || r > 2.01 {
			t.Errorf("weight 2 owns %.4f times the entries of weight 1, want 2 ± 0.01", r)
		}
	})
}

// TestGolden pins the table format: every node, and every version of FerroLB, must build the
// same table from the same backends, or flows move when nodes disagree (a rolling upgrade,
// ECMP sending a flow to another node). If this test fails, the hash, its domain strings, the
// sort order or the order of turns changed: that is a breaking change of the datapath, not
// a test to update casually.
func TestGolden(t *testing.T) {
	small := mustBuild(t, maglev.SmallSize, []maglev.Backend{
		{"10.244.1.10:8080", 1}, {"10.244.2.11:8080", 1}, {"10.244.3.12:8080", 2}, {"[fd00::1]:443", 1},
	})
	wantSmall := []uint32{
		2, 0, 3, 0, 2, 2, 3, 2, 2, 2, 0, 2, 2, 0, 3, 2, 0, 3, 2, 2, 3, 0, 2, 0, 2, 3, 2, 2, 0, 2, 3, 2,
		0, 2, 2, 3, 3, 2, 0, 3, 0, 2, 2, 2, 3, 2, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 0, 1, 1, 2,
		1, 1, 1, 2, 3, 1, 1, 2, 0, 1, 1, 2, 1, 0, 2, 2, 1, 1, 2, 2, 0, 1, 2, 3, 1, 0, 2, 3, 3, 2, 0, 2,
		3, 2, 2, 0, 1, 2, 2, 0, 1, 2, 0, 3, 2, 2, 3, 0, 2, 2, 2, 3, 0, 2, 0, 1, 3, 2, 2, 2, 2, 3, 2, 2,
		0, 3, 3, 2, 2, 0, 3, 2, 2, 0, 0, 3, 0, 3, 2, 2, 3, 0, 2, 2, 3, 3, 0, 2, 0, 2, 2, 0, 2, 2, 3, 3,
		2, 2, 0, 3, 0, 2, 2, 3, 2, 2, 2, 0, 2, 1, 1, 1, 1, 0, 1, 1, 1, 3, 1, 2, 1, 1, 3, 2, 1, 0, 1, 2,
		1, 1, 0, 2, 3, 1, 2, 2, 3, 0, 2, 2, 1, 3, 2, 1, 0, 1, 3, 0, 1, 2, 2, 3, 1, 2, 0, 3, 3, 2, 2, 0,
		3, 2, 2, 1, 2, 3, 0, 1, 2, 0, 3, 0, 2, 2, 3, 3, 2, 2, 0, 2, 2, 0, 0, 2, 3, 3, 0,
	}
	if diff := cmp.Diff(wantSmall, small.Entries); diff != "" {
		t.Errorf("M=251 table (-want +got):\n%s", diff)
	}
	big := mustBuild(t, maglev.DefaultSize, equalBackends(100))
	const wantDigest = 0x54df1e36ed6b4451
	if got := digest(big.Entries); got != wantDigest {
		t.Errorf("digest of the M=65537 N=100 table = %#x, want %#x", got, wantDigest)
	}
}

// digest is FNV-1a 64 over the entries, each as 4 little-endian bytes.
func digest(entries []uint32) uint64 {
	h := uint64(14695981039346656037)
	for _, e := range entries {
		for range 4 {
			h ^= uint64(e & 0xff)
			h *= 1099511628211
			e >>= 8
		}
	}
	return h
}

// TestAllocs keeps Build to a fixed number of allocations, none per entry: the sorted copy
// of the backends, the entries, the cursors and, for skewed weights only, the heap.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, tt := range []struct {
		name     string
		backends []maglev.Backend
		want     float64
	}{
		{"equal weights", equalBackends(1000), 3},
		{"one weight dwarfs the others", oneHeavy(1000), 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := testing.AllocsPerRun(5, func() {
				table, err := maglev.Build(maglev.DefaultSize, tt.backends)
				if err != nil {
					t.Fatal(err)
				}
				sinkTable = table
			})
			if got != tt.want {
				t.Errorf("Build: %v allocations, want %v", got, tt.want)
			}
		})
	}
}

func mustBuild(t *testing.T, size int, backends []maglev.Backend) maglev.Table {
	t.Helper()
	table, err := maglev.Build(size, backends)
	if err != nil {
		t.Fatalf("Build(%d, %d backends): %v", size, len(backends), err)
	}
	for e, i := range table.Entries {
		if int(i) >= len(table.Backends) {
			t.Fatalf("entry %d = %d, only %d backends", e, i, len(table.Backends))
		}
	}
	return table
}

// owners returns the name of the owner of every entry: indexes shift when backends come
// and go, names do not.
func owners(table maglev.Table) []string {
	out := make([]string, len(table.Entries))
	for e, i := range table.Entries {
		out[e] = table.Backends[i].Name
	}
	return out
}

func ownerCounts(table maglev.Table) map[string]int {
	counts := make(map[string]int)
	for _, i := range table.Entries {
		counts[table.Backends[i].Name]++
	}
	return counts
}

func minMax(counts map[string]int) (lo, hi int) {
	first := true
	for _, c := range counts {
		if first || c < lo {
			lo = c
		}
		if first || c > hi {
			hi = c
		}
		first = false
	}
	return lo, hi
}

func withWeights(backends []maglev.Backend, weights map[int]uint32) []maglev.Backend {
	for i, w := range weights {
		backends[i].Weight = w
	}
	return backends
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
