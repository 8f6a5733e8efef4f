package maglev

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// referenceEntries is Pseudocode 1 of the paper transcribed as literally as Go allows, with
// an explicit permutation table, and the turns of Katran's MaglevHashV2 credit loop. It costs
// O(M*N) memory and, with skewed weights, O(M*N) time: it is the specification that
// populate's heap and cursors must reproduce exactly.
func referenceEntries(m int, backends []Backend) []uint32 {
	sorted := slices.Clone(backends)
	slices.SortFunc(sorted, func(a, b Backend) int { return strings.Compare(a.Name, b.Name) })
	n := len(sorted)
	permutation := make([][]int, n)
	var maxWeight uint64
	for i, b := range sorted {
		if b.Weight == 0 {
			continue
		}
		maxWeight = max(maxWeight, uint64(b.Weight))
		offset := int(nameHash(offsetDomain, b.Name) % uint64(m))
		skip := int(nameHash(skipDomain, b.Name)%uint64(m-1)) + 1
		permutation[i] = make([]int, m)
		for j := range m {
			permutation[i][j] = (offset + j*skip) % m
		}
	}
	next := make([]int, n)
	credit := make([]uint64, n)
	entry := make([]int, m)
	for j := range entry {
		entry[j] = -1
	}
	filled := 0
	for {
		for i, b := range sorted {
			credit[i] += uint64(b.Weight)
			if credit[i] < maxWeight {
				continue
			}
			credit[i] -= maxWeight
			c := permutation[i][next[i]]
			for entry[c] >= 0 {
				next[i]++
				c = permutation[i][next[i]]
			}
			entry[c] = i
			next[i]++
			filled++
			if filled == m {
				out := make([]uint32, m)
				for j, e := range entry {
					out[j] = uint32(e)
				}
				return out
			}
		}
	}
}

// TestBuildMatchesReference compares Build with the literal transcription on random backend
// sets: equal weights (Pseudocode 1 itself), small weights, and weights up to 2^32-1 that
// make one backend dwarf the others.
func TestBuildMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	weightKinds := []struct {
		name   string
		weight func() uint32
	}{
		{"equal", func() uint32 { return 7 }},
		{"small", func() uint32 { return rng.Uint32N(5) }}, // includes 0
		{"skewed", func() uint32 {
			if rng.IntN(4) == 0 {
				return rng.Uint32()
			}
			return rng.Uint32N(3) + 1
		}},
	}
	for _, size := range []int{251, 257, 1021} {
		for _, wk := range weightKinds {
			t.Run(fmt.Sprintf("M=%d/%s", size, wk.name), func(t *testing.T) {
				for range 40 {
					backends := make([]Backend, 1+rng.IntN(60))
					for i := range backends {
						backends[i] = Backend{Name: fmt.Sprintf("10.%d.%d.%d:%d", rng.IntN(256), rng.IntN(256), i, 80+rng.IntN(3)), Weight: wk.weight()}
					}
					got, err := Build(size, backends)
					if err != nil {
						if activeCount(backends) == 0 {
							continue
						}
						t.Fatalf("Build(%d, %v): %v", size, backends, err)
					}
					want := referenceEntries(size, backends)
					if diff := cmp.Diff(want, got.Entries); diff != "" {
						t.Fatalf("Build(%d, %v) entries differ from the reference (-want +got):\n%s", size, backends, diff)
					}
					// Build picks one schedule of turns; both must give the reference's.
					for _, s := range schedules {
						if diff := cmp.Diff(want, s.entries(size, got.Backends)); diff != "" {
							t.Fatalf("%s(%d, %v) entries differ from the reference (-want +got):\n%s", s.name, size, backends, diff)
						}
					}
				}
			})
		}
	}
}

// schedules are the two ways populate can order the turns.
type schedule struct {
	name string
	take func(entries []uint32, cursors []cursor, maxWeight uint64)
}

var schedules = []schedule{
	{"turnsByRounds", turnsByRounds},
	{"turnsByHeap", turnsByHeap},
}

// entries populates a table of size entries for the sorted backends with schedule s.
func (s schedule) entries(size int, sorted []Backend) []uint32 {
	entries := make([]uint32, size)
	for i := range entries {
		entries[i] = empty
	}
	cursors, maxWeight, _ := newCursors(sorted, activeCount(sorted), size)
	s.take(entries, cursors, maxWeight)
	return entries
}

func activeCount(backends []Backend) int {
	n := 0
	for _, b := range backends {
		if b.Weight > 0 {
			n++
		}
	}
	return n
}

// TestFNV checks that fnv1a is FNV-1a 64 as hash/fnv defines it, so the table format rests
// on a published hash rather than on this package's copy of it.
func TestFNV(t *testing.T) {
	for _, s := range []string{"", "a", "10.244.1.10:8080", offsetDomain + "10.244.1.10:8080", "\x00\xff"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := fnv1a(fnvOffset64, s), h.Sum64(); got != want {
			t.Errorf("fnv1a(%q) = %#x, hash/fnv says %#x", s, got, want)
		}
	}
}

// TestPermutationGolden pins the hashes of a few names: see TestGolden for why.
func TestPermutationGolden(t *testing.T) {
	tests := []struct {
		name         string
		m            uint32
		offset, skip uint32
	}{
		{"10.244.1.10:8080", 65537, 41387, 1228},
		{"10.244.2.11:8080", 65537, 12193, 62098},
		{"[fd00::1]:443", 65537, 58733, 24874},
		{"10.244.1.10:8080", 251, 177, 212},
		{"[fd00::1]:443", 251, 91, 90},
	}
	for _, tt := range tests {
		offset, skip := permutation(tt.name, tt.m)
		if offset != tt.offset || skip != tt.skip {
			t.Errorf("permutation(%q, %d) = %d, %d, want %d, %d", tt.name, tt.m, offset, skip, tt.offset, tt.skip)
		}
	}
	if got, want := nameHash(offsetDomain, "10.244.1.10:8080"), uint64(0xb2255d39e884df1a); got != want {
		t.Errorf("offset hash of 10.244.1.10:8080 = %#x, want %#x", got, want)
	}
	if got, want := nameHash(skipDomain, "10.244.1.10:8080"), uint64(0xffa83dc67f1404cb); got != want {
		t.Errorf("skip hash of 10.244.1.10:8080 = %#x, want %#x", got, want)
	}
}

// TestPermutation checks the offset and skip ranges for the sizes the datapath uses, and
// that no two of a few thousand realistic names share both (which would make them compete
// for exactly the same entries).
func TestPermutation(t *testing.T) {
	for _, m := range []uint32{251, 65537} {
		seen := make(map[[2]uint32]string)
		for i := range 4096 {
			name := fmt.Sprintf("10.244.%d.%d:8080", i/256, i%256)
			offset, skip := permutation(name, m)
			if offset >= m || skip < 1 || skip >= m {
				t.Fatalf("permutation(%q, %d) = %d, %d: out of range", name, m, offset, skip)
			}
			if m == 65537 {
				if other, ok := seen[[2]uint32{offset, skip}]; ok {
					t.Errorf("permutation(%q) = permutation(%q) = %d, %d", name, other, offset, skip)
				}
				seen[[2]uint32{offset, skip}] = name
			}
		}
	}
}
