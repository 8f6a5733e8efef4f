package speaker

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Protocols of ferrolb_service_announced.
const (
	protocolLayer2 = "layer2"
	protocolBGP    = "bgp"
)

const serviceAnnouncedHelp = "1 for each Service address this node announces: by layer 2 (it answers ARP/NDP) or by BGP " +
	"(it advertises it to at least one peer). One series per Service address and protocol on the nodes that announce it."

var descServiceAnnounced = prometheus.NewDesc("ferrolb_service_announced", serviceAnnouncedHelp,
	[]string{"namespace", "service", "address", "node", "protocol"}, nil)

// announcements is what this node announces per protocol: Service keys ("namespace/name")
// per address. The reconciles set it, and it logs what starts and stops being announced,
// with the Services, at info: "which node took my address, and when" is then in the log.
type announcements struct {
	node string
	log  logr.Logger

	mu  sync.Mutex
	now map[string]map[netip.Addr][]string // protocol -> address -> Services
}

func newAnnouncements(node string, log logr.Logger) *announcements {
	return &announcements{node: node, log: log, now: map[string]map[netip.Addr][]string{}}
}

// set replaces what protocol announces, logging each address that starts or stops.
func (a *announcements) set(protocol string, next map[netip.Addr][]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.now[protocol]
	for _, addr := range slices.SortedFunc(maps.Keys(next), netip.Addr.Compare) {
		if _, ok := prev[addr]; !ok {
			a.log.Info("announcing", "protocol", protocol, "address", addr, "services", next[addr], "node", a.node)
		}
	}
	for _, addr := range slices.SortedFunc(maps.Keys(prev), netip.Addr.Compare) {
		if _, ok := next[addr]; !ok {
			a.log.Info("no longer announcing", "protocol", protocol, "address", addr, "services", prev[addr], "node", a.node)
		}
	}
	a.now[protocol] = next
}

func (a *announcements) Describe(ch chan<- *prometheus.Desc) { ch <- descServiceAnnounced }

func (a *announcements) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for protocol, byAddr := range a.now {
		for addr, svcs := range byAddr {
			for _, key := range svcs {
				ns, name, _ := cutKey(key)
				ch <- prometheus.MustNewConstMetric(descServiceAnnounced, prometheus.GaugeValue, 1, ns, name, addr.String(), a.node, protocol)
			}
		}
	}
}

// cutKey splits a Service key "namespace/name".
func cutKey(key string) (namespace, name string, ok bool) { return strings.Cut(key, "/") }
