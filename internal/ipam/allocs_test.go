package ipam_test

import (
	"testing"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

// TestAllocs keeps the steady state cheap: assigning a single-stack Service and releasing it
// costs the holding, its list of holders, the Service's list of addresses and the Result's;
// nothing else (no heap boxing, no maps built per call).
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, bp := range benchPools {
		t.Run(bp.name, func(t *testing.T) {
			a := ipam.New()
			a.SetPools([]ipam.Pool{{Name: "big", Ranges: []ipam.Range{ipam.PrefixRange(bp.prefix)}, AutoAssign: true}})
			for i := range 1000 {
				a.Assign(benchRequest(bp.fam, "held/"+string(rune('a'+i%26))+string(rune('a'+i/26))))
			}
			req := benchRequest(bp.fam, "fresh")
			n := testing.AllocsPerRun(1000, func() {
				if res := a.Assign(req); len(res.Addresses) != 1 {
					t.Fatalf("Assign: %+v", res)
				}
				a.Release(req.Service)
			})
			if n > 4 {
				t.Errorf("Assign+Release: %v allocations, want at most 4", n)
			}
			held := a.Holds("held/aa")
			again := benchRequest(bp.fam, "held/aa")
			n = testing.AllocsPerRun(1000, func() {
				if res := a.Assign(again); len(res.Addresses) != 1 || res.Addresses[0] != held[0] {
					t.Fatalf("Assign: %+v", res)
				}
			})
			if n > 1 {
				t.Errorf("Assign of a Service that holds its address: %v allocations, want at most 1 (the Result)", n)
			}
		})
	}
}
