// Package ipam gives LoadBalancer Services addresses from pools: CIDRs and ranges of both
// families, automatic and requested addresses, sharing by key, dual-stack policies, pool
// priorities, overlapping pools. It knows nothing of Kubernetes: the caller resolves selectors
// into a list of candidate pools and passes plain requests.
//
// The allocator is the in-memory view of who holds what. It is rebuilt from the Services'
// status (Restore) before anything new is allocated, so a restart never moves an address.
//
// Allocation cost does not grow with the number of addresses handed out: each pool keeps, per
// family, a cursor over never-used addresses and a min-heap of released ones, so an
// allocation is O(log n) (amortised O(1) while a pool fills in order), even in an IPv4 /8 or
// an IPv6 /64. (A Service with a sharing key also looks at every address held under that
// key: O(k) for k such addresses.)
package ipam
