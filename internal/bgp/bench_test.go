package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// The measurements of issue 5, as benchmarks against FRR in namespaces (they need root and
// FRR, like the tests). Each reports its figure as a custom metric, the median over b.N
// rounds; run them with a fixed count, e.g.
//
//	go test -run XXX -bench 'Detection|Advertise' -benchtime 5x ./internal/bgp/

// medianMS is the median of ds in milliseconds.
func medianMS(ds []time.Duration) float64 {
	slices.Sort(ds)
	return float64(ds[len(ds)/2]) / float64(time.Millisecond)
}

// detection measures, per round, the time from cutting the node's traffic (carrier up,
// every packet dropped) to the router's kernel losing the route, then restores traffic and
// waits for the route to come back.
func detection(b *testing.B, conf string, peer Peer) {
	const vip = "198.51.100.9/32"
	f, sp, router, node := labConf(b, conf)
	sp.SetPaths(Path{Prefix: netip.MustParsePrefix(vip)})
	sp.SetPeers(peer)
	var took []time.Duration
	for b.Loop() {
		f.waitFor("route installed", func() (bool, string) {
			ok, err := kernelRoute(router, vip)
			return ok, fmt.Sprint(err)
		})
		if peer.BFD.Enabled {
			f.waitFor("BFD up", func() (bool, string) {
				st, err := f.BFDStatus(nodeV4)
				return st == "up", fmt.Sprint(st, err)
			})
		}
		cut(b, node)
		start := time.Now()
		for {
			ok, err := kernelRoute(router, vip)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		took = append(took, time.Since(start))
		uncut(b, node)
	}
	b.ReportMetric(medianMS(took), "ms-to-withdraw")
	b.ReportMetric(0, "ns/op") // the loop also waits for recovery: ns/op means nothing here
}

// BFD at 100 ms x 3 (target: under 350 ms).
func BenchmarkBFDDetection(b *testing.B) {
	peer := routerPeer(routerV4)
	peer.BFD = fastBFD
	detection(b, frrConfWith(map[string][]string{nodeV4: {"bfd", "bfd profile fast"}}), peer)
}

// Without BFD, the shortest timers FRR and RFC 4271 allow: hold 3 s, keepalive 1 s.
func BenchmarkHoldTimerDetection(b *testing.B) {
	peer := routerPeer(routerV4)
	peer.HoldTime, peer.KeepaliveTime = 3*time.Second, time.Second
	detection(b, frrConfWith(map[string][]string{nodeV4: {"timers 1 3"}}), peer)
}

// receivedPrefixes is how many prefixes FRR has accepted from the node over IPv4.
func receivedPrefixes(f *frr) (int, error) {
	var sum struct {
		Peers map[string]struct {
			PfxRcd int `json:"pfxRcd"`
		} `json:"peers"`
	}
	if err := f.Show(&sum, "show bgp ipv4 unicast summary json"); err != nil {
		return 0, err
	}
	return sum.Peers[nodeV4].PfxRcd, nil
}

// Time from SetPaths with 10,000 addresses on an established session to FRR holding all of
// them (target: under 5 s).
func BenchmarkAdvertise10k(b *testing.B) {
	const n = 10000
	f, sp, _, _ := labConf(b, frrConfWith(nil))
	sp.SetPeers(routerPeer(routerV4))
	f.waitEstablished(nodeV4)
	paths := make([]Path, 0, n)
	base := netip.MustParseAddr("10.96.0.0")
	for a := base; len(paths) < n; a = a.Next() {
		paths = append(paths, Path{Prefix: netip.PrefixFrom(a, 32), Communities: []uint32{nodeASN<<16 | 1}})
	}
	var took []time.Duration
	wait := func(want int) time.Duration {
		start := time.Now()
		for {
			got, err := receivedPrefixes(f)
			if err != nil {
				b.Fatal(err)
			}
			if got == want {
				return time.Since(start)
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("FRR holds %d prefixes after a minute, want %d", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for b.Loop() {
		start := time.Now()
		sp.SetPaths(paths...)
		wait(n)
		took = append(took, time.Since(start))
		sp.SetPaths()
		wait(0)
	}
	b.ReportMetric(medianMS(took), "ms-for-10k")
	b.ReportMetric(0, "ns/op")
}
