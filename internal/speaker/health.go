package speaker

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/healthcheck"
)

// Active health checks (ferrolb.io/health-check): with --datapath=xdp the speaker probes
// the endpoints of the Services that ask for it, from the node, and programs the datapath
// without those that fail. The datapath keeps an endpoint's established flows on it after
// it leaves (its slot lives on until reused), so only new flows move: a backend whose
// health endpoint hangs while its connections are still served keeps serving them.

// backendHealth is an endpoint of a Service under active checks, as last planned.
type backendHealth struct {
	service string // namespace/name
	backend netip.AddrPort
	healthy bool
	why     string // the last failed probe's error, when unhealthy
}

// planHealth takes the endpoints that fail their Service's active check out of the
// datapath's services, pure like planDatapath, whose result it filters: down is the
// checker's verdicts (unhealthy targets and why). It returns the targets to probe (every
// endpoint of a checked Service, the unhealthy ones included, so that they can come back),
// each checked endpoint's health, and notes. When every endpoint of a Service port fails,
// all are kept: a check that fails everywhere is more likely wrong (a path, a port, a
// network policy) than every endpoint broken, and without endpoints the port would go to
// kube-proxy, which sends to them all anyway.
func planHealth(svcs []corev1.Service, progs []datapath.Service, names map[serviceKey]string, down map[healthcheck.Target]string) (
	[]datapath.Service, []healthcheck.Target, []backendHealth, []string) {
	type parsed struct {
		hc config.HealthCheck
		on bool
	}
	byKey := map[string]*corev1.Service{}
	for i := range svcs {
		byKey[config.Key(&svcs[i])] = &svcs[i]
	}
	checks := map[string]parsed{}
	var (
		out     = make([]datapath.Service, 0, len(progs))
		targets []healthcheck.Target
		status  []backendHealth
		notes   []string
		seenT   = map[healthcheck.Target]bool{}
		seenB   = map[[2]string]bool{}
	)
	for _, ds := range progs {
		key := names[serviceKey{vip: ds.VIP, port: ds.Port, proto: ds.Protocol}]
		p, done := checks[key]
		if svc := byKey[key]; !done && svc != nil {
			hc, on, problems := config.ServiceHealthCheck(svc)
			p = parsed{hc, on}
			checks[key] = p
			for _, pr := range problems {
				notes = append(notes, fmt.Sprintf("Service %s: %s", key, pr.Error()))
			}
		}
		if !p.on || len(ds.Backends) == 0 {
			out = append(out, ds)
			continue
		}
		var keep []datapath.Backend
		var why string
		for _, b := range ds.Backends {
			port := p.hc.Port
			if port == 0 {
				port = b.Port
			}
			t := healthcheck.Target{Addr: netip.AddrPortFrom(b.Addr, port), Check: p.hc.Check}
			if !seenT[t] {
				seenT[t] = true
				targets = append(targets, t)
			}
			reason, bad := down[t]
			be := netip.AddrPortFrom(b.Addr, b.Port)
			if k := [2]string{key, be.String()}; !seenB[k] {
				seenB[k] = true
				status = append(status, backendHealth{service: key, backend: be, healthy: !bad, why: reason})
			}
			if bad {
				why = reason
				continue
			}
			keep = append(keep, b)
		}
		if len(keep) == 0 {
			notes = append(notes, fmt.Sprintf("Service %s: every endpoint of %s fails its active health check (%s): all kept, "+
				"as a check that fails everywhere is more likely wrong than every endpoint; check the ferrolb.io/health-check annotations",
				key, svcAddr(ds), why))
			keep = ds.Backends
		}
		ds.Backends = keep
		out = append(out, ds)
	}
	return out, targets, status, notes
}

func svcAddr(ds datapath.Service) string {
	proto := "TCP"
	if ds.Protocol == datapath.UDP {
		proto = "UDP"
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(ds.VIP, ds.Port), proto)
}

// datapathHealth is the datapath reconciler's side of the checks: it hands the checker its
// targets on every reconcile, and logs what changed since the last.
type datapathHealth struct {
	checker *healthcheck.Checker

	mu     sync.Mutex
	status []backendHealth
	logged map[string]bool // the notes of the last reconcile, each logged when it appeared
}

// filter is planHealth with the checker's verdicts; it sets the checker's targets.
func (h *datapathHealth) filter(ctx context.Context, svcs []corev1.Service, progs []datapath.Service, names map[serviceKey]string) []datapath.Service {
	if h == nil {
		return progs
	}
	out, targets, status, notes := planHealth(svcs, progs, names, h.checker.Unhealthy())
	h.checker.Set(targets)
	log := logf.FromContext(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	was := map[[2]string]bool{}
	for _, b := range h.status {
		was[[2]string{b.service, b.backend.String()}] = b.healthy
	}
	for _, b := range status {
		healthy, known := was[[2]string{b.service, b.backend.String()}]
		switch {
		case !b.healthy && (healthy || !known):
			log.Info("endpoint fails its active health check: no new flows go to it, its established ones stay",
				"service", b.service, "endpoint", b.backend.String(), "error", b.why)
		case b.healthy && known && !healthy:
			log.Info("endpoint passes its active health check again: new flows go to it", "service", b.service, "endpoint", b.backend.String())
		}
	}
	now := map[string]bool{}
	for _, n := range notes {
		if !h.logged[n] {
			log.Info(n)
		}
		now[n] = true
	}
	h.status, h.logged = status, now
	return out
}

var (
	descBackendHealthy = prometheus.NewDesc("ferrolb_datapath_backend_healthy",
		"With --datapath=xdp, for each endpoint of a Service with ferrolb.io/health-check: 1 while it passes its active check on this node, 0 while it fails (no new flows).",
		[]string{"service", "backend"}, nil)
	descHealthProbes = prometheus.NewDesc("ferrolb_datapath_health_probes_total",
		"Active health check probes this node made, by kind (tcp, http) and result (success, failure).",
		[]string{"kind", "result"}, nil)
)

// healthCollector exports the checks' verdicts and probe counts.
type healthCollector struct{ h *datapathHealth }

func (c healthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBackendHealthy
	ch <- descHealthProbes
}

func (c healthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.h.checker.Probes() {
		result := "success"
		if !p.Success {
			result = "failure"
		}
		ch <- prometheus.MustNewConstMetric(descHealthProbes, prometheus.CounterValue, float64(p.Count), p.Kind.String(), result)
	}
	c.h.mu.Lock()
	status := c.h.status
	c.h.mu.Unlock()
	for _, b := range status {
		v := 0.0
		if b.healthy {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descBackendHealthy, prometheus.GaugeValue, v, b.service, b.backend.String())
	}
}
