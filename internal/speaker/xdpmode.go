package speaker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/maglev"
)

// checkDatapathOptions checks the datapath's mode and sizes, whatever --datapath says (a
// typo is an error even while the datapath is off), and sets the mode's default. Each
// error names its flag.
func checkDatapathOptions(opts *Options) error {
	var err error
	if opts.DatapathXDPMode, err = datapath.ParseXDPMode(string(opts.DatapathXDPMode)); err != nil {
		return err
	}
	if n := opts.DatapathConntrackEntries; n != 0 {
		if err := datapath.CheckConntrackSize(n); err != nil {
			return fmt.Errorf("--datapath-conntrack-entries=%d: %w", n, err)
		}
	}
	if n := opts.DatapathMaglevTableSize; n != 0 {
		if err := maglev.CheckSize(n); err != nil {
			return fmt.Errorf("--datapath-maglev-table-size=%d: %w", n, err)
		}
	}
	return nil
}

// datapathConfig is the datapath's configuration from the speaker's options.
func datapathConfig(ifname string, opts Options) datapath.Config {
	return datapath.Config{Interface: ifname, XDPMode: opts.DatapathXDPMode,
		ConntrackSize: opts.DatapathConntrackEntries, MaglevTableSize: opts.DatapathMaglevTableSize}
}

var descXDPMode = prometheus.NewDesc("ferrolb_datapath_xdp_mode",
	"1 for the mode the XDP program runs in on an interface: native or generic (--datapath-xdp-mode=auto chooses).",
	[]string{"interface", "mode"}, nil)

// xdpModeCollector exports where the XDP program is attached, and how: one series per
// interface it is attached to now.
type xdpModeCollector struct{ attachments func() []datapath.Attachment }

func (c xdpModeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descXDPMode }

func (c xdpModeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.attachments() {
		ch <- prometheus.MustNewConstMetric(descXDPMode, prometheus.GaugeValue, 1, a.Interface, string(a.Mode))
	}
}
