// Command ferrolb-lab is FerroLB's lab, a developer tool: the whole system on this machine,
// in network namespaces (internal/lab; `make lab`). It is a binary of its own because the
// lab runs a real API server through controller-runtime's envtest, which the production
// binary, cmd/ferrolb, must not carry. The lab's processes inside the namespaces (a node's
// speaker, a pod's web server) are this binary re-executed, so it runs the speaker itself
// (speaker.Run, as cmd/ferrolb does). This package holds flags and wiring only.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/lab"
)

func main() {
	// The lab's processes inside namespaces are this binary, re-executed (internal/lab).
	if lab.IsChild() {
		os.Exit(lab.RunChild())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	dir := "/run/ferrolb-lab"
	var dp string
	root := &cobra.Command{
		Use:   "ferrolb-lab",
		Short: "FerroLB's whole system on this machine, in network namespaces (root)",
		Long: `"ferrolb-lab up" builds (or reuses) a real kube-apiserver and etcd, creates network
namespaces for a router running FRR, three nodes with a backend pod each, a client on the
nodes' LAN and one behind the router, and runs the controller, a speaker and kube-proxy per
node. It applies sample pools, an L2Policy, BGP peers and two Services, shows real requests
reaching them over layer 2 and over BGP, and prints how to poke at it. "ferrolb-lab down"
removes every namespace and process. Run it from a checkout of FerroLB ("make lab").
With --datapath=xdp the speakers run FerroLB's XDP load balancer on each node's eth0 and
carry the Services' traffic themselves (SNAT); kube-proxy still runs beside them.`,
		SilenceUsage: true,
	}
	root.PersistentFlags().StringVar(&dir, "dir", dir, "state directory: kubeconfig, logs, report")
	root.PersistentFlags().StringVar(&dp, "datapath", "none", "the speakers' --datapath: none (kube-proxy carries Service traffic) or xdp")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the lab in the background and print its report (safe to run twice)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			return lab.Up(dir, dp, runCommand(self, dir, dp), cmd.OutOrStdout())
		},
	}
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop the lab: every process, namespace and link it made",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return lab.Down(dir) },
	}
	run := &cobra.Command{
		Use:    "run",
		Short:  "Run the lab in the foreground until interrupted (what up starts)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			return lab.Serve(cmd.Context(), lab.Options{Dir: dir, Datapath: datapath.Kind(dp),
				Logf: func(f string, a ...any) { fmt.Printf("lab: "+f+"\n", a...) }}, self+" down")
		},
	}
	root.AddCommand(up, down, run)
	return root
}

// runCommand is the command line up starts: this binary's hidden run, with up's flags.
func runCommand(self, dir, dp string) []string {
	return []string{self, "run", "--dir", dir, "--datapath", dp}
}
