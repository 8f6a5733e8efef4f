package speaker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrolb/ferrolb/internal/bgp"
	"github.com/ferrolb/ferrolb/internal/l2"
	"github.com/ferrolb/ferrolb/internal/l2/member"
)

var (
	descAnnounced = prometheus.NewDesc("ferrolb_l2_announced_addresses",
		"Addresses this node answers ARP/NDP for, per interface.", []string{"interface"}, nil)
	descAnswered = prometheus.NewDesc("ferrolb_l2_requests_answered_total",
		"ARP requests and neighbor solicitations answered, per interface.", []string{"interface", "protocol"}, nil)
	descIgnored = prometheus.NewDesc("ferrolb_l2_requests_ignored_total",
		"ARP and NDP frames received and not answered (not for an announced address, malformed, our own).", []string{"interface", "protocol"}, nil)
	descGratuitous = prometheus.NewDesc("ferrolb_l2_gratuitous_sent_total",
		"Gratuitous ARPs and unsolicited neighbor advertisements sent, per interface.", []string{"interface", "protocol"}, nil)
	descSendErrors = prometheus.NewDesc("ferrolb_l2_send_errors_total",
		"ARP and NDP frames the kernel refused to send.", []string{"interface", "protocol"}, nil)
	descTakeovers = prometheus.NewDesc("ferrolb_l2_takeovers_total",
		"Times this node started announcing an address.", nil, nil)
	descAlive = prometheus.NewDesc("ferrolb_speakers_alive",
		"Speakers this node sees alive by their heartbeats, itself included unless it cannot announce.", nil, nil)
	descHeartbeats = prometheus.NewDesc("ferrolb_heartbeats_received_total",
		"Heartbeats received that counted.", nil, nil)
	descHeartbeatsIgnored = prometheus.NewDesc("ferrolb_heartbeats_ignored_total",
		"Heartbeats received that did not count, by reason (signature and no-key: the speakers do not share a key).", []string{"reason"}, nil)
	descPanics = prometheus.NewDesc("ferrolb_packet_handler_panics_total",
		"Received packets whose handling panicked (a bug: please report it); each was dropped and the speaker went on. Protocol arp, ndp or heartbeat (interface empty).",
		[]string{"interface", "protocol"}, nil)
)

// l2Collector reads the speaker's state when Prometheus scrapes: the responders keep plain
// counters and know nothing of Prometheus.
type l2Collector struct {
	ann     *l2.Responders
	tracker *member.Tracker
}

func (c l2Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAnnounced, descAnswered, descIgnored, descGratuitous, descSendErrors, descTakeovers, descAlive,
		descHeartbeats, descHeartbeatsIgnored, descPanics} {
		ch <- d
	}
}

func (c l2Collector) Collect(ch chan<- prometheus.Metric) {
	perIface := map[string]int{}
	for _, ifs := range c.ann.Announced() {
		for _, name := range ifs {
			perIface[name]++
		}
	}
	for name, n := range perIface {
		ch <- prometheus.MustNewConstMetric(descAnnounced, prometheus.GaugeValue, float64(n), name)
	}
	for _, s := range c.ann.Stats() {
		name, a, n := s.Name, s.ARP, s.NDP
		counter := func(d *prometheus.Desc, v uint64, proto string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name, proto)
		}
		counter(descAnswered, a.RequestsAnswered, "arp")
		counter(descAnswered, n.Answered, "ndp")
		counter(descIgnored, a.RequestsIgnored, "arp")
		counter(descIgnored, n.Ignored, "ndp")
		counter(descGratuitous, a.GratuitousSent, "arp")
		counter(descGratuitous, n.Unsolicited, "ndp")
		counter(descSendErrors, a.SendErrors, "arp")
		counter(descSendErrors, n.SendErrors, "ndp")
		counter(descPanics, a.Panics, "arp")
		counter(descPanics, n.Panics, "ndp")
	}
	takeovers := c.ann.Takeovers()
	ch <- prometheus.MustNewConstMetric(descTakeovers, prometheus.CounterValue, float64(takeovers))
	ch <- prometheus.MustNewConstMetric(descAlive, prometheus.GaugeValue, float64(len(c.tracker.Alive())))
	hb := c.tracker.Stats()
	ch <- prometheus.MustNewConstMetric(descHeartbeats, prometheus.CounterValue, float64(hb.Counted))
	for i, n := range hb.Ignored {
		ch <- prometheus.MustNewConstMetric(descHeartbeatsIgnored, prometheus.CounterValue, float64(n), member.IgnoredReasons[i])
	}
	ch <- prometheus.MustNewConstMetric(descPanics, prometheus.CounterValue, float64(hb.Panics), "", "heartbeat")
}

var (
	// Labels peer (the peer's address) and bgppeer (the BGPPeer that asks for the session).
	descSessionUp = prometheus.NewDesc("ferrolb_bgp_session_up",
		"1 when the BGP session with the peer is Established, else 0.", []string{"peer", "bgppeer"}, nil)
	descAdvertised = prometheus.NewDesc("ferrolb_bgp_advertised_prefixes",
		"Prefixes this node sends the peer.", []string{"peer", "bgppeer"}, nil)
	descBFDUp = prometheus.NewDesc("ferrolb_bfd_session_up",
		"1 when the BFD session with the peer is Up, else 0 (peers with a BFD profile only).", []string{"peer", "bgppeer"}, nil)
	descBFDDown = prometheus.NewDesc("ferrolb_bfd_session_down_total",
		"Times the BFD session with the peer went from Up to Down (each took the BGP session down).", []string{"peer", "bgppeer"}, nil)
)

// bgpCollector reads the BGP speaker's sessions when Prometheus scrapes, named by the
// BGPPeers the last reconcile set them up for.
type bgpCollector struct {
	speaker *bgp.Speaker
	status  *bgpStatus
}

func (c bgpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessionUp, descAdvertised, descBFDUp, descBFDDown} {
		ch <- d
	}
}

func (c bgpCollector) Collect(ch chan<- prometheus.Metric) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	states, _ := c.speaker.PeerStates() // an error leaves the scrape without the sessions; the status loop logs it
	names := c.status.names()
	for _, st := range states {
		peer := []string{st.Address.String(), names[st.Address]}
		ch <- prometheus.MustNewConstMetric(descSessionUp, prometheus.GaugeValue, b2f(st.Established()), peer...)
		ch <- prometheus.MustNewConstMetric(descAdvertised, prometheus.GaugeValue, float64(st.Advertised), peer...)
		if st.BFD != "" {
			ch <- prometheus.MustNewConstMetric(descBFDUp, prometheus.GaugeValue, b2f(st.BFD == "Up"), peer...)
			ch <- prometheus.MustNewConstMetric(descBFDDown, prometheus.CounterValue, float64(st.BFDFailures), peer...)
		}
	}
}
