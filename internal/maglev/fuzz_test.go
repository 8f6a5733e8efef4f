package maglev

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fuzzSizes are the table sizes the fuzzer picks from: primes small enough for thousands of
// runs a second, and the two the datapath uses most.
var fuzzSizes = []int{251, 257, 1021, 4093}

// fuzzBackends decodes spec, three bytes per backend (at most 300): a name byte, then a
// weight byte and a shift, so that weights run from 0 to near 2^32. Name bytes below 32 name
// one of 32 shared names, so that duplicates are common; the others give unique names.
func fuzzBackends(spec []byte) []Backend {
	n := min(len(spec)/3, 300)
	backends := make([]Backend, n)
	for i := range backends {
		b := spec[3*i : 3*i+3]
		name := fmt.Sprintf("10.%d.%d.%d:80", b[0], i/256, i%256)
		if b[0] < 32 {
			name = fmt.Sprintf("shared-%d", b[0])
		}
		backends[i] = Backend{Name: name, Weight: uint32(b[1]) << (b[2] % 32)}
	}
	return backends
}

// FuzzBuild builds tables from arbitrary backend sets and weights: Build never panics, fails
// exactly when it should and with the right error, and otherwise fills every entry with the
// index of a backend of weight above zero, in proportion to the weights, the same whatever the
// order of the backends, and (for small sets) the same as the literal reference.
//
// Run it with -fuzzminimizetime=3s or so: by default the fuzzer spends most of its time
// minimizing new inputs of a few hundred backends.
func FuzzBuild(f *testing.F) {
	f.Add(uint8(0), []byte{})                          // no backends
	f.Add(uint8(0), []byte{40, 0, 0, 41, 0, 7})        // all weights zero
	f.Add(uint8(1), []byte{40, 1, 0})                  // one backend
	f.Add(uint8(2), []byte{1, 1, 0, 2, 1, 0, 1, 3, 0}) // duplicate name
	f.Add(uint8(3), []byte{40, 255, 31, 41, 1, 0, 42, 1, 0, 43, 0, 0})
	f.Add(uint8(0), slices.Repeat([]byte{200, 1, 0}, 260)) // more backends than entries
	f.Add(uint8(0), slices.Repeat([]byte{200, 3, 1}, 251)) // as many backends as entries

	f.Fuzz(func(t *testing.T, sizeIndex uint8, spec []byte) {
		size := fuzzSizes[int(sizeIndex)%len(fuzzSizes)]
		backends := fuzzBackends(spec)
		input := slices.Clone(backends)

		sorted := slices.Clone(backends)
		slices.SortFunc(sorted, func(a, b Backend) int { return strings.Compare(a.Name, b.Name) })
		var wantErr error
		active := activeCount(backends)
		switch {
		case hasDuplicate(sorted):
			wantErr = ErrDuplicateName
		case active == 0:
			wantErr = ErrNoBackends
		case active > size:
			wantErr = ErrTooManyBackends
		}

		table, err := Build(size, backends)
		if diff := cmp.Diff(input, backends); diff != "" {
			t.Fatalf("Build modified its input (-want +got):\n%s", diff)
		}
		if wantErr != nil || err != nil {
			if !errors.Is(err, wantErr) {
				t.Fatalf("Build(%d, %v) error = %v, want %v", size, backends, err, wantErr)
			}
			return
		}

		if diff := cmp.Diff(sorted, table.Backends); diff != "" {
			t.Fatalf("Backends (-want +got):\n%s", diff)
		}
		if len(table.Entries) != size {
			t.Fatalf("len(Entries) = %d, want %d", len(table.Entries), size)
		}
		counts := make([]int64, len(table.Backends))
		for e, i := range table.Entries {
			if int(i) >= len(table.Backends) {
				t.Fatalf("entry %d = %d, only %d backends", e, i, len(table.Backends))
			}
			if table.Backends[i].Weight == 0 {
				t.Fatalf("entry %d belongs to %q, of weight 0", e, table.Backends[i].Name)
			}
			counts[i]++
		}

		// A backend of weight w owns M*w/W entries, off by less than 1 + N*w/W (N counting
		// the backends of weight above zero), that is |count*W - M*w| < W + N*w. W < 2^41
		// and counts are below 2^12, so int64 holds every product.
		var total int64
		for _, b := range table.Backends {
			total += int64(b.Weight)
		}
		for i, b := range table.Backends {
			w := int64(b.Weight)
			dev := counts[i]*total - int64(size)*w
			if dev < 0 {
				dev = -dev
			}
			if dev >= total+int64(active)*w {
				t.Fatalf("%q (weight %d of %d) owns %d entries of %d: out of proportion", b.Name, b.Weight, total, counts[i], size)
			}
		}

		reversed := slices.Clone(backends)
		slices.Reverse(reversed)
		again, err := Build(size, reversed)
		if err != nil {
			t.Fatalf("Build of the reversed backends: %v", err)
		}
		if diff := cmp.Diff(table, again); diff != "" {
			t.Fatalf("Build of the reversed backends differs (-want +got):\n%s", diff)
		}

		if len(backends) <= 40 {
			if diff := cmp.Diff(referenceEntries(size, backends), table.Entries); diff != "" {
				t.Fatalf("entries differ from the reference (-want +got):\n%s", diff)
			}
		}
	})
}

func hasDuplicate(sorted []Backend) bool {
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Name == sorted[i-1].Name {
			return true
		}
	}
	return false
}
