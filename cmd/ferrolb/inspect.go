package main

import (
	"github.com/spf13/cobra"

	"github.com/ferrolb/ferrolb/internal/datapath/inspect"
)

func newInspectCommand() *cobra.Command {
	var socket, output string
	client := func() (*inspect.Client, error) {
		if err := inspect.CheckFormat(output); err != nil {
			return nil, err
		}
		return inspect.NewClient(socket), nil
	}
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Show what this node's XDP datapath holds: Services, backends, conntrack, packets not forwarded",
		Long: `Inspect reads the XDP datapath (speaker --datapath=xdp) of the node it runs on, from the
speaker's socket in the node's network namespace: run it on the node as root, or in the
speaker's pod (kubectl exec -n ferrolb-system <speaker pod> -- ferrolb inspect).

  ferrolb inspect                               every Service with its backends and counters,
                                                and the packets not forwarded, by reason
  ferrolb inspect service 192.0.2.10:80/TCP     one Service: its Maglev table per backend
  ferrolb inspect conntrack --client 198.51.100.7
                                                conntrack entries, filtered`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			o, err := c.Overview(cmd.Context())
			if err != nil {
				return err
			}
			return inspect.WriteOverview(cmd.OutOrStdout(), output, o)
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&socket, "socket", inspect.DefaultSocket, "the speaker's inspection socket (its --inspect-socket)")
	pf.StringVarP(&output, "output", "o", "text", "output format: text or json")

	cmd.AddCommand(&cobra.Command{
		Use:   "service VIP:PORT[/PROTO]",
		Short: "One Service: its backends' share of the Maglev table, flows and counters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := inspect.ParseServiceKey(args[0])
			if err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			s, err := c.Service(cmd.Context(), k)
			if err != nil {
				return err
			}
			return inspect.WriteService(cmd.OutOrStdout(), output, s)
		},
	})

	var qf inspect.QueryFlags
	ct := &cobra.Command{
		Use:   "conntrack",
		Short: "Conntrack entries: how many, and those of a client, a Service or a backend",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := qf.Query()
			if err != nil {
				return err
			}
			c, err := client()
			if err != nil {
				return err
			}
			dump, err := c.Conntrack(cmd.Context(), q)
			if err != nil {
				return err
			}
			return inspect.WriteConntrack(cmd.OutOrStdout(), output, dump)
		},
	}
	f := ct.Flags()
	f.StringVar(&qf.Client, "client", "", "only the flows of this client address")
	f.StringVar(&qf.VIP, "vip", "", "only the flows to this Service address")
	f.Uint16Var(&qf.Port, "port", 0, "only the flows to this Service port")
	f.StringVar(&qf.Protocol, "protocol", "", "only TCP or UDP flows")
	f.StringVar(&qf.Backend, "backend", "", "only the flows sent to this backend address")
	f.IntVar(&qf.Limit, "limit", 0, "print at most this many flows (all are counted); 0: no limit")
	f.BoolVar(&qf.CountOnly, "count", false, "print the counts only")
	cmd.AddCommand(ct)
	return cmd
}
