package controller

import (
	"errors"
	"math/big"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

// ipamMetrics are the controller's own metrics, served with controller-runtime's on
// /metrics.
type ipamMetrics struct {
	poolCapacity *prometheus.GaugeVec
	poolUsed     *prometheus.GaugeVec
	allocations  *prometheus.CounterVec
	pending      prometheus.Gauge
}

func newIPAMMetrics() (*ipamMetrics, error) {
	m := &ipamMetrics{
		// Two metrics rather than one with a state label, so that each sums: over pools,
		// families or both, capacity adds up to what FerroLB can hand out and used to what
		// Services hold.
		poolCapacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferrolb_pool_capacity_addresses",
			Help: "Addresses a pool can hand out, per family: its blocks less the addresses it overlaps with other pools, and less .0 and .255 with avoidBuggyIPs (the IPPool status' total).",
		}, []string{"pool", "family"}),
		poolUsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferrolb_pool_used_addresses",
			Help: "Addresses of a pool held by Services, per family; an address shared by several Services counts once (the IPPool status' used).",
		}, []string{"pool", "family"}),
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferrolb_allocations_total",
			Help: "Service addresses by outcome: assigned, released, refused (a requested address or a family not granted).",
		}, []string{"outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ferrolb_services_pending",
			Help: "Services FerroLB serves that were refused an address or a family they asked for.",
		}),
	}
	var err error
	if m.poolCapacity, err = register(m.poolCapacity); err != nil {
		return nil, err
	}
	if m.poolUsed, err = register(m.poolUsed); err != nil {
		return nil, err
	}
	if m.allocations, err = register(m.allocations); err != nil {
		return nil, err
	}
	if m.pending, err = register(m.pending); err != nil {
		return nil, err
	}
	return m, nil
}

// register adds c to controller-runtime's registry, or returns the collector registered
// before (a process that runs the controller twice, as tests do).
func register[C prometheus.Collector](c C) (C, error) {
	err := metrics.Registry.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// pool sets a pool's series: one per family it has addresses of, none while it is invalid.
func (m *ipamMetrics) pool(st ipam.PoolStatus) {
	m.poolDeleted(st.Name)
	for fam, total := range st.Total {
		f, _ := new(big.Float).SetInt(total).Float64()
		m.poolCapacity.WithLabelValues(st.Name, fam.String()).Set(f)
		m.poolUsed.WithLabelValues(st.Name, fam.String()).Set(float64(st.Used[fam]))
	}
}

func (m *ipamMetrics) poolDeleted(name string) {
	m.poolCapacity.DeletePartialMatch(prometheus.Labels{"pool": name})
	m.poolUsed.DeletePartialMatch(prometheus.Labels{"pool": name})
}

var descInvalid = prometheus.NewDesc("ferrolb_config_invalid_objects",
	"Objects of a kind that FerroLB cannot use as they are: IPPools whose Ready condition is False for reason Invalid, "+
		"L2Policies, BGPAdvertisements and BFDProfiles whose Valid condition is False (the speakers ignore them). Counted by the replica that leads; 0 on the others.",
	[]string{"kind"}, nil)

// invalidObjects is the collector of ferrolb_config_invalid_objects: the names of the objects
// of each kind that the reconcilers last found invalid. Its kinds are the ones the controller
// checks (a fixed set), each reported from the start, at 0 while none is invalid.
type invalidObjects struct {
	mu    sync.Mutex
	names map[string]map[string]struct{} // kind -> names of its invalid objects
}

func newInvalidObjects() *invalidObjects {
	return &invalidObjects{names: map[string]map[string]struct{}{}}
}

// addKind reports kind from now on.
func (v *invalidObjects) addKind(kind string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.names[kind] == nil {
		v.names[kind] = map[string]struct{}{}
	}
}

// set records whether the object of kind named name is invalid; a deleted object is not.
func (v *invalidObjects) set(kind, name string, invalid bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	names := v.names[kind]
	if names == nil {
		names = map[string]struct{}{}
		v.names[kind] = names
	}
	if invalid {
		names[name] = struct{}{}
	} else {
		delete(names, name)
	}
}

func (v *invalidObjects) Describe(ch chan<- *prometheus.Desc) { ch <- descInvalid }

func (v *invalidObjects) Collect(ch chan<- prometheus.Metric) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for kind, names := range v.names {
		ch <- prometheus.MustNewConstMetric(descInvalid, prometheus.GaugeValue, float64(len(names)), kind)
	}
}
