package controller

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/ipam"
)

// allocation is the controller's in-memory view of who holds what. The Services' status is
// the record; this view is rebuilt from it (restore) before anything is allocated, and kept in
// step with the pools on every use.
type allocation struct {
	mu       sync.Mutex
	alloc    *ipam.Allocator
	pools    []config.Pool
	poolErrs map[string]error
	applied  map[string]int64 // pool name -> generation last applied
	restored bool
	class    string
	// pending are the Services refused something; they are retried when an address is freed.
	pending map[string]struct{}
	// compat are the other systems' pool kinds read besides IPPools (--compat).
	compat []schema.GroupVersionKind
}

func newAllocation(class string) *allocation {
	return &allocation{alloc: ipam.New(), applied: map[string]int64{}, poolErrs: map[string]error{}, class: class,
		pending: map[string]struct{}{}}
}

// sync brings the allocator's pools in line with the IPPools in c and, the first time,
// restores every Service's holdings from its status. Call with mu held.
func (s *allocation) sync(ctx context.Context, c client.Reader) error {
	var list v1.IPPoolList
	if err := c.List(ctx, &list); err != nil {
		return fmt.Errorf("list IPPools: %w", err)
	}
	gens := make(map[string]int64, len(list.Items))
	for _, p := range list.Items {
		gens[p.Name] = p.Generation
	}
	var compatObjs []unstructured.Unstructured
	if len(s.compat) > 0 {
		var err error
		if compatObjs, err = s.listCompat(ctx, c, gens); err != nil {
			return err
		}
	}
	if !s.restored || !maps.Equal(gens, s.applied) {
		items := list.Items
		if len(s.compat) > 0 {
			items = mergeCompat(ctx, items, convertCompat(ctx, compatObjs))
		}
		s.setPools(items)
		s.applied = gens
	}
	if s.restored {
		return nil
	}
	return s.restore(ctx, c)
}

func (s *allocation) setPools(items []v1.IPPool) {
	snap, problems := config.For(config.Resources{Pools: items})
	s.pools = snap.Pools
	s.poolErrs = map[string]error{}
	for _, p := range problems {
		// Keep the name known to the allocator, with no addresses: it hands out nothing,
		// and what Services hold from it is reported, never taken away.
		s.poolErrs[p.Object.GetName()] = p.Err
		s.pools = append(s.pools, config.Pool{Pool: ipam.Pool{Name: p.Object.GetName()}})
	}
	slices.SortFunc(s.pools, func(a, b config.Pool) int { return strings.Compare(a.Name, b.Name) })
	ip := make([]ipam.Pool, 0, len(s.pools))
	for _, p := range s.pools {
		ip = append(ip, p.Pool)
	}
	s.alloc.SetPools(ip)
}

// restore records what every served Service holds according to its status, oldest Service
// first, so that if two claim one address the older one keeps it.
func (s *allocation) restore(ctx context.Context, c client.Reader) error {
	var list corev1.ServiceList
	if err := c.List(ctx, &list); err != nil {
		return fmt.Errorf("list Services: %w", err)
	}
	svcs := list.Items
	slices.SortFunc(svcs, func(a, b corev1.Service) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(config.Key(&a), config.Key(&b))
	})
	log := logf.FromContext(ctx)
	n := 0
	for i := range svcs {
		svc := &svcs[i]
		addrs := config.Ingress(svc)
		if !config.Served(svc, s.class) || len(addrs) == 0 {
			continue
		}
		req, _ := config.ServiceRequest(svc, s.pools)
		for _, r := range s.alloc.Restore(req, addrs) {
			log.Info("address in status not restored", "service", req.Service, "refusal", r.String())
		}
		n++
	}
	s.restored = true
	log.Info("restored allocations from Service status", "services", n)
	return nil
}

// waiting returns the pending Services if freed says an address was freed. Call with mu held.
func (s *allocation) waiting(freed bool) []string {
	if !freed || len(s.pending) == 0 {
		return nil
	}
	return slices.Collect(maps.Keys(s.pending))
}

// poolOf names the pool whose blocks hold addr, or "".
func (s *allocation) poolOf(addr netip.Addr) string { return config.PoolOf(s.pools, addr) }
