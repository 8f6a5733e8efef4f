package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/status"
)

func newStatusCommand() *cobra.Command {
	var (
		kf       kubeFlags
		output   string
		watch    bool
		interval time.Duration
		src      status.Source
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what FerroLB is doing: pools, Services and how each is announced, BGP sessions, speakers",
		Long: `status reads, from the API server alone, what FerroLB is doing, on one screen:
  - pools: addresses used and free per family, conflicts, invalid ones
  - every LoadBalancer Service FerroLB serves: its addresses and their pools, how each is
    announced (layer 2: which node answers; BGP: which nodes advertise to which peers), and
    what is pending and why
  - BGP sessions per node and peer, with BFD
  - the speaker pods: ready/desired, and which are not ready
It needs to list IPPools, BGPPeers and Services cluster-wide, and to get the DaemonSet
ferrolb-speaker and list pods in --namespace (what it cannot read of the speakers, it says).

-o json and -o yaml print the same as a document whose fields are stable (its "format" is
` + status.Format + `); see README.md, "Seeing what FerroLB does".`,
		Example: `  ferrolb status
  ferrolb status --watch
  ferrolb status -o json | jq '.services[] | select(.pending)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(status.Formats, output) {
				return fmt.Errorf("-o %s: use %s", output, strings.Join(status.Formats, ", "))
			}
			cfg, err := kf.restConfig()
			if err != nil {
				return err
			}
			s, err := status.ForConfig(cfg)
			if err != nil {
				return err
			}
			s.Namespace, s.LoadBalancerClass = src.Namespace, src.LoadBalancerClass
			if watch {
				return status.Watch(cmd.Context(), s, status.WatchOptions{Interval: interval, Format: output,
					Out: cmd.OutOrStdout(), Errors: cmd.ErrOrStderr(), Terminal: isTerminal(os.Stdout)})
			}
			r, err := s.Gather(cmd.Context())
			if err != nil {
				return err
			}
			return status.Write(cmd.OutOrStdout(), r, output)
		},
	}
	kf.register(cmd)
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", status.FormatText, "output format: "+strings.Join(status.Formats, ", "))
	f.BoolVarP(&watch, "watch", "w", false, "redraw when something changes, until ctrl-C")
	f.DurationVar(&interval, "interval", 2*time.Second, "with --watch: how often to read")
	f.StringVar(&src.Namespace, "namespace", status.DefaultNamespace, "namespace of the speaker DaemonSet (ferrolb-speaker)")
	f.StringVar(&src.LoadBalancerClass, "load-balancer-class", config.LoadBalancerClass,
		"the class FerroLB serves (its controller's --load-balancer-class); Services with it or none are shown")
	return cmd
}

// isTerminal tells whether f is a terminal, where --watch clears the screen between
// readings.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
