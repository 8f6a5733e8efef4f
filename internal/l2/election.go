// Package l2 decides which node answers ARP and NDP for each Service address (Announcer),
// and runs this node's answers: Responders keeps one ARP and one NDP responder (the arp and
// ndp subpackages) on each interface that announces something.
//
// The choice is a pure function of the address and the set of eligible, healthy nodes:
// rendezvous (highest random weight) hashing, as MetalLB does. Every speaker computes the same
// answer from the same inputs, so no per-Service Lease churns the API server (a known Cilium
// pain point), and when a node joins or leaves, only the addresses it wins or held move.
package l2

import (
	"net/netip"
)

// Announcer returns the node among nodes that announces addr, and false when there is none.
// The order of nodes does not matter; duplicate names count once.
func Announcer(addr netip.Addr, nodes []string) (string, bool) {
	var best string
	var bestScore uint64
	found := false
	a := addr.As16()
	for _, n := range nodes {
		s := score(a, n)
		// Ties (vanishingly rare) go to the lower name, so the answer never depends on order.
		if !found || s > bestScore || (s == bestScore && n < best) {
			best, bestScore, found = n, s, true
		}
	}
	return best, found
}

// score hashes a node name and an address: FNV-1a over both, then a 64-bit finaliser
// (splitmix64) so that names differing in one character still spread evenly.
func score(addr [16]byte, node string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(node); i++ {
		h ^= uint64(node[i])
		h *= prime
	}
	h ^= 0xff // separator: "ab"+addr and "a"+"b..." must differ
	h *= prime
	for _, b := range addr {
		h ^= uint64(b)
		h *= prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
