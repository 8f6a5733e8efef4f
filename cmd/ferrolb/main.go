// Command ferrolb is FerroLB: LoadBalancer Services for bare-metal Kubernetes. One binary,
// one subcommand per role; this package holds flags and wiring only. It is what the image
// ships, so it links no test scaffolding; the lab, which runs a real API server through
// envtest, is the developer binary cmd/ferrolb-lab.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ferrolb",
		Short: "LoadBalancer Services for bare-metal Kubernetes",
		Long: `FerroLB gives Services of type LoadBalancer addresses from pools (IPAM) and makes
them reachable from outside the cluster: by answering ARP and NDP (Layer 2) or by
announcing routes over BGP, with BFD for fast failure detection.

Run "ferrolb controller" once per cluster (a Deployment) and "ferrolb speaker" on every
node (a DaemonSet). See README.md for a quick start.`,
		SilenceUsage: true,
	}
	root.AddCommand(newControllerCommand(), newSpeakerCommand(), newStatusCommand(), newInspectCommand(), newConvertCommand(), newVersionCommand())
	return root
}

// kubeFlags are the connection flags every subcommand that talks to the API server shares.
type kubeFlags struct {
	kubeconfig string
	logFlags
}

func (k *kubeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.kubeconfig, "kubeconfig", "",
		"kubeconfig file; default: $KUBECONFIG, then the in-cluster service account, then ~/.kube/config")
	k.logFlags.register(cmd)
}

// restConfig sets up logging and returns the API server connection.
func (k *kubeFlags) restConfig() (*rest.Config, error) {
	log, err := k.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	ctrl.SetLogger(log)
	if k.kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", k.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", k.kubeconfig, err)
		}
		return cfg, nil
	}
	return ctrl.GetConfig()
}
