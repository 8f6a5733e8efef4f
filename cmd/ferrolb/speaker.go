package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferrolb/ferrolb/internal/buildinfo"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/datapath/inspect"
	"github.com/ferrolb/ferrolb/internal/l2/member"
	"github.com/ferrolb/ferrolb/internal/maglev"
	"github.com/ferrolb/ferrolb/internal/speaker"
)

func newSpeakerCommand() *cobra.Command {
	var kf kubeFlags
	opts := speaker.Options{}
	var keyFile, dp, xdpMode string
	cmd := &cobra.Command{
		Use:   "speaker",
		Short: "Make Service addresses reachable from this node (run on every node)",
		Long: `The speaker runs on every node, in the host network. It makes the addresses the
controller allocated reachable from outside the cluster: on the local segment by
answering ARP and NDP (one node per address, with fast failover), or by announcing
them to routers over BGP (every eligible node, spread by ECMP), with BFD.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := kf.restConfig()
			if err != nil {
				return err
			}
			if opts.Datapath, err = datapath.ParseKind(dp); err != nil {
				return err
			}
			opts.DatapathXDPMode = datapath.XDPMode(xdpMode) // checked by speaker.Run
			if opts.MemberKey, err = readMemberKey(keyFile, opts.MemberAcceptUnsigned); err != nil {
				return err
			}
			buildinfo.Register(version)
			return speaker.Run(cmd.Context(), cfg, opts)
		},
	}
	kf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "the Node this speaker runs on (default: $NODE_NAME)")
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", podAddr(7474), metricsHelp)
	f.StringVar(&opts.HealthAddr, "health-probe-bind-address", podAddr(7475), healthHelp)
	f.BoolVar(&opts.MetricsSecure, "metrics-secure", false, metricsSecureHelp)
	f.StringVar(&opts.LoadBalancerClass, "load-balancer-class", config.LoadBalancerClass,
		"serve Services with this spec.loadBalancerClass, and those with none")
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "ferrolb-system"
	}
	f.StringVar(&opts.Namespace, "namespace", ns, "the speaker's namespace: BGPPeers' MD5 Secrets are read there (default: $POD_NAMESPACE, else ferrolb-system)")
	f.Uint16Var(&opts.MemberPort, "member-port", 7946, "UDP port speakers exchange heartbeats on (open it between nodes)")
	f.DurationVar(&opts.MemberInterval, "member-interval", 100*time.Millisecond,
		"heartbeat interval; a node is declared dead after 3 missed, and its addresses move")
	f.StringVar(&keyFile, "member-key-file", "",
		"file holding the key that signs heartbeats (at least 16 bytes; the same on every node); a missing file is an error unless --member-accept-unsigned")
	f.BoolVar(&opts.MemberAcceptUnsigned, "member-accept-unsigned", false,
		"also count unsigned heartbeats and send both kinds, for rolling a key out to speakers without one; with a --member-key-file that does not exist, run unsigned")
	f.StringVar(&dp, "datapath", string(datapath.None),
		`who carries Service traffic on this node: "none" (kube-proxy or the CNI; the speaker only announces) or "xdp" (FerroLB's XDP load balancer)`)
	f.StringVar(&opts.DatapathInterface, "datapath-interface", "",
		"with --datapath=xdp, the interface Service traffic arrives on (default: the one holding the node's InternalIP)")
	f.StringVar(&opts.StateDir, "state-dir", "/run/ferrolb",
		"directory of the state file: what this speaker last announced, announced again when it restarts while the API server is unreachable (a hostPath under /run: kept across container restarts, not reboots); empty keeps none")
	f.StringVar(&opts.InspectSocket, "inspect-socket", inspect.DefaultSocket,
		`with --datapath=xdp, the Unix socket "ferrolb inspect" reads the datapath from: abstract (a leading @, in the node's network namespace), answering root only; "0" turns it off`)
	f.StringVar(&xdpMode, "datapath-xdp-mode", string(datapath.XDPAuto),
		`with --datapath=xdp, how the program is attached: "native" (in the driver; an interface without native XDP is an error), "generic" (after the kernel built the packet's buffer: any interface, slower) or "auto" (native if every interface has it, else generic; the log, ferrolb inspect and ferrolb_datapath_xdp_mode say which)`)
	f.IntVar(&opts.DatapathConntrackEntries, "datapath-conntrack-entries", datapath.DefaultConntrackSize,
		fmt.Sprintf("with --datapath=xdp, the flows each conntrack table (IPv4, IPv6) and the SNAT port table hold, %d to %d (memory: docs/performance.md)", datapath.MinConntrackSize, datapath.MaxConntrackSize))
	f.IntVar(&opts.DatapathMaglevTableSize, "datapath-maglev-table-size", maglev.DefaultSize,
		fmt.Sprintf("with --datapath=xdp, the Maglev table size of each Service: a prime, %d to %d, above 100 times a Service's backends for even shares (8 bytes an entry per Service)", maglev.MinSize, maglev.MaxSize))
	f.BoolVar(&opts.DatapathDSR, "datapath-dsr", false,
		"with --datapath=xdp, the default for Services without the ferrolb.io/datapath-mode annotation: send their packets to endpoints by IPIP (direct server return) instead of SNAT; the endpoints' nodes decapsulate them (every --datapath=xdp speaker does)")
	return cmd
}

// readMemberKey reads the heartbeat key from path, without surrounding whitespace (a
// Secret written with echo ends in a newline). No path means unsigned heartbeats. A path
// with no file there (a Secret without the key "key", or mounted as optional) fails closed: unsigned
// heartbeats let anyone on the node network keep a dead node alive, so they are no silent
// fallback; acceptUnsigned (--member-accept-unsigned) allows them, and the log says so.
func readMemberKey(path string, acceptUnsigned bool) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path) //nolint:gosec // the operator's own flag
	if errors.Is(err, fs.ErrNotExist) {
		if !acceptUnsigned {
			return nil, fmt.Errorf("--member-key-file %s: no such file: the Secret ferrolb-memberlist (made by the chart, or by "+
				"the controller when absent) is missing or has no key \"key\"; create it "+
				"(kubectl -n ferrolb-system create secret generic ferrolb-memberlist --from-literal=key=\"$(openssl rand -base64 32)\") "+
				"or pass --member-accept-unsigned to run with unsigned heartbeats", path)
		}
		ctrl.Log.WithName("speaker").Info("no heartbeat key: heartbeats are unsigned (--member-accept-unsigned)", "file", path)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--member-key-file: %w", err)
	}
	key := bytes.TrimSpace(b)
	if len(key) < member.MinKeyLength {
		return nil, fmt.Errorf("--member-key-file %s: %d bytes, want at least %d (for example: openssl rand -base64 32)", path, len(key), member.MinKeyLength)
	}
	return key, nil
}
