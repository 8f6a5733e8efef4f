package metricsserving

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// registerMu makes replacing a collector one step: two components starting at once in one
// process (tests) would otherwise both remove the old collector, and the second to add its
// own would fail and stop.
var registerMu sync.Mutex

// Register adds c to controller-runtime's registry, replacing the collector of the same
// metrics that a component run before in this process registered (tests run several): c's
// state belongs to one run.
func Register(c prometheus.Collector) error {
	registerMu.Lock()
	defer registerMu.Unlock()
	err := metrics.Registry.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		metrics.Registry.Unregister(are.ExistingCollector)
		return metrics.Registry.Register(c)
	}
	return err
}
