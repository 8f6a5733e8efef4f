package ipam_test

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

// benchBatch is how many Services a benchmark assigns (or releases) between two pauses of
// the timer in which it restores the number of held addresses.
const benchBatch = 1024

type benchPool struct {
	name   string
	prefix netip.Prefix
	fam    ipam.Family
}

var benchPools = []benchPool{
	{"v4-slash8", netip.MustParsePrefix("10.0.0.0/8"), ipam.IPv4},
	{"v6-slash64", netip.MustParsePrefix("2001:db8::/64"), ipam.IPv6},
}

var benchSizes = []int{1_000, 10_000, 100_000}

// benchAllocator returns an allocator with one big pool and held Services holding one
// address each, and the requests it used.
func benchAllocator(b *testing.B, bp benchPool, held int) (*ipam.Allocator, []ipam.Request) {
	b.Helper()
	a := ipam.New()
	a.SetPools([]ipam.Pool{{Name: "big", Ranges: []ipam.Range{ipam.PrefixRange(bp.prefix)}, AutoAssign: true}})
	reqs := make([]ipam.Request, held)
	for i := range reqs {
		reqs[i] = benchRequest(bp.fam, "held/"+strconv.Itoa(i))
		if res := a.Assign(reqs[i]); len(res.Addresses) != 1 {
			b.Fatalf("setup: %s got %v, refused %v", reqs[i].Service, res.Addresses, res.Refused)
		}
	}
	return a, reqs
}

func benchRequest(fam ipam.Family, name string) ipam.Request {
	return ipam.Request{Service: name, Families: []ipam.Family{fam}, Pools: []string{"big"}}
}

// freshRequests are requests for Services that hold nothing yet, built before the timer runs.
func freshRequests(fam ipam.Family, n int) []ipam.Request {
	reqs := make([]ipam.Request, n)
	for i := range reqs {
		reqs[i] = benchRequest(fam, "fresh/"+strconv.Itoa(i))
	}
	return reqs
}

// BenchmarkAssign measures Assign of a fresh single-stack Service while held Services hold an
// address each. Every benchBatch operations the timer stops and the batch is released again,
// so the number of held addresses stays between held and held+benchBatch (and the next batch
// reuses the released addresses through the heap).
func BenchmarkAssign(b *testing.B) {
	for _, bp := range benchPools {
		for _, held := range benchSizes {
			b.Run(bp.name+"/held="+strconv.Itoa(held), func(b *testing.B) {
				a, _ := benchAllocator(b, bp, held)
				fresh := freshRequests(bp.fam, benchBatch)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					req := fresh[i%benchBatch]
					if res := a.Assign(req); len(res.Addresses) != 1 {
						b.Fatalf("%s got %v, refused %v", req.Service, res.Addresses, res.Refused)
					}
					if i%benchBatch == benchBatch-1 {
						b.StopTimer()
						for _, r := range fresh {
							a.Release(r.Service)
						}
						b.StartTimer()
					}
				}
			})
		}
	}
}

// BenchmarkAssignCursor is BenchmarkAssign without releases: every address comes from the
// pool's cursor. The number of held addresses grows by b.N from held.
func BenchmarkAssignCursor(b *testing.B) {
	for _, bp := range benchPools {
		for _, held := range benchSizes {
			b.Run(bp.name+"/held="+strconv.Itoa(held), func(b *testing.B) {
				a, _ := benchAllocator(b, bp, held)
				fresh := freshRequests(bp.fam, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if res := a.Assign(fresh[i]); len(res.Addresses) != 1 {
						b.Fatalf("%s got %v, refused %v", fresh[i].Service, res.Addresses, res.Refused)
					}
				}
			})
		}
	}
}

// BenchmarkRelease measures Release of a Service holding one address while held others hold
// theirs. Every benchBatch operations the timer stops and the batch is assigned again.
func BenchmarkRelease(b *testing.B) {
	for _, bp := range benchPools {
		for _, held := range benchSizes {
			b.Run(bp.name+"/held="+strconv.Itoa(held), func(b *testing.B) {
				a, _ := benchAllocator(b, bp, held)
				fresh := freshRequests(bp.fam, benchBatch)
				assignAll := func() {
					for _, r := range fresh {
						if res := a.Assign(r); len(res.Addresses) != 1 {
							b.Fatalf("%s got %v, refused %v", r.Service, res.Addresses, res.Refused)
						}
					}
				}
				assignAll()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					a.Release(fresh[i%benchBatch].Service)
					if i%benchBatch == benchBatch-1 {
						b.StopTimer()
						assignAll()
						b.StartTimer()
					}
				}
			})
		}
	}
}

// BenchmarkAssign100kFromEmpty allocates 100k single-stack Services from an empty pool; one
// op is the whole 100k (target: well under 1 s).
func BenchmarkAssign100kFromEmpty(b *testing.B) {
	const n = 100_000
	for _, bp := range benchPools {
		b.Run(bp.name, func(b *testing.B) {
			reqs := freshRequests(bp.fam, n)
			pools := []ipam.Pool{{Name: "big", Ranges: []ipam.Range{ipam.PrefixRange(bp.prefix)}, AutoAssign: true}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a := ipam.New()
				a.SetPools(pools)
				for _, r := range reqs {
					if res := a.Assign(r); len(res.Addresses) != 1 {
						b.Fatalf("%s got %v, refused %v", r.Service, res.Addresses, res.Refused)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "s/100k")
		})
	}
}

// BenchmarkRestart100k rebuilds an allocator holding 100k Services (SetPools, Restore each)
// and assigns one more: the first allocation's cursor steps once over every restored address
// at the start of the pool. One op is the whole restart.
func BenchmarkRestart100k(b *testing.B) {
	const n = 100_000
	for _, bp := range benchPools {
		b.Run(bp.name, func(b *testing.B) {
			old, reqs := benchAllocator(b, bp, n)
			held := make([][]netip.Addr, n)
			for i, r := range reqs {
				held[i] = old.Holds(r.Service)
			}
			pools := []ipam.Pool{{Name: "big", Ranges: []ipam.Range{ipam.PrefixRange(bp.prefix)}, AutoAssign: true}}
			fresh := benchRequest(bp.fam, "fresh")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a := ipam.New()
				a.SetPools(pools)
				for j, r := range reqs {
					if refused := a.Restore(r, held[j]); refused != nil {
						b.Fatal(refused)
					}
				}
				if res := a.Assign(fresh); len(res.Addresses) != 1 {
					b.Fatalf("got %v, refused %v", res.Addresses, res.Refused)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e9, "s/restart")
		})
	}
}
