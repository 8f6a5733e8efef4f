package controller

import (
	"errors"
	"math/big"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferrolb/ferrolb/internal/ipam"
)

// ipamMetrics are the controller's own metrics, served with controller-runtime's on
// /metrics.
type ipamMetrics struct {
	poolAddresses *prometheus.GaugeVec
	allocations   *prometheus.CounterVec
	pending       prometheus.Gauge
}

func newIPAMMetrics() (*ipamMetrics, error) {
	m := &ipamMetrics{
		poolAddresses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferrolb_pool_addresses",
			Help: "Addresses of a pool by family: state=total it can hand out, state=used held by Services.",
		}, []string{"pool", "family", "state"}),
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
	m.poolAddresses, err = register(m.poolAddresses)
	if err != nil {
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

func (m *ipamMetrics) pool(st ipam.PoolStatus) {
	m.poolAddresses.DeletePartialMatch(prometheus.Labels{"pool": st.Name})
	for fam, total := range st.Total {
		f, _ := new(big.Float).SetInt(total).Float64()
		m.poolAddresses.WithLabelValues(st.Name, fam.String(), "total").Set(f)
		m.poolAddresses.WithLabelValues(st.Name, fam.String(), "used").Set(float64(st.Used[fam]))
	}
}

func (m *ipamMetrics) poolDeleted(name string) {
	m.poolAddresses.DeletePartialMatch(prometheus.Labels{"pool": name})
}
