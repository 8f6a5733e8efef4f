package main

import (
	"net"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/ferrolb/ferrolb/internal/buildinfo"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/controller"
)

func newControllerCommand() *cobra.Command {
	var kf kubeFlags
	opts := controller.Options{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Allocate addresses to LoadBalancer Services (run once per cluster)",
		Long: `The controller watches Services of type LoadBalancer and IPPools, gives each Service
addresses from the pools that match it, and writes them to status.loadBalancer.ingress.
Refusals are reported as Events on the Service. Several replicas may run: a Lease picks
the one that works. The one that works also creates the speakers' heartbeat key Secret
(--member-secret) when it does not exist.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := kf.restConfig()
			if err != nil {
				return err
			}
			buildinfo.Register(version)
			return controller.Run(cmd.Context(), cfg, opts)
		},
	}
	kf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", podAddr(7472), metricsHelp)
	f.StringVar(&opts.HealthAddr, "health-probe-bind-address", podAddr(7473), healthHelp)
	f.BoolVar(&opts.MetricsSecure, "metrics-secure", false, metricsSecureHelp)
	f.BoolVar(&opts.LeaderElection, "leader-elect", true, "take turns with other replicas through a Lease")
	f.StringVar(&opts.LeaseNamespace, "lease-namespace", envOr("POD_NAMESPACE", "ferrolb-system"),
		"namespace of the leader-election Lease (default: $POD_NAMESPACE)")
	f.StringVar(&opts.Namespace, "namespace", envOr("POD_NAMESPACE", "ferrolb-system"),
		"the controller's namespace, where it makes the heartbeat Secret (default: $POD_NAMESPACE, else ferrolb-system)")
	f.StringVar(&opts.MemberSecret, "member-secret", "ferrolb-memberlist",
		`the Secret with the key the speakers sign heartbeats with (key "key"): created in --namespace with a random key when absent, never changed when present; "" makes none`)
	f.StringVar(&opts.LoadBalancerClass, "load-balancer-class", config.LoadBalancerClass,
		"serve Services with this spec.loadBalancerClass, and those with none")
	// API Priority and Fairness protects the API server; the client-side limit only has to keep
	// a runaway loop in check, and client-go's default (5 qps) would stretch a backlog of 1,000
	// Services over minutes.
	f.Float32Var(&opts.QPS, "kube-api-qps", 500, "requests per second to the API server")
	f.IntVar(&opts.Burst, "kube-api-burst", 1000, "burst of requests to the API server")
	f.IntVar(&opts.Workers, "workers", 4, "Services reconciled at once")
	f.StringVar(&opts.StatusAddr, "status-bind-address", "0", statusHelp)
	f.StringSliceVar(&opts.Compat, "compat", nil,
		"also read the pools of other systems in the cluster, as they are: metallb (IPAddressPool), cilium "+
			"(CiliumLoadBalancerIPPool); their CRDs stay theirs. See docs/migration.md")
	return cmd
}

// Where metrics and probes listen by default: the pod's own address ($POD_IP, from the
// downward API), which the kubelet's probes and Prometheus reach, and not every interface of
// the host (the speaker runs in the host network, where ":port" would also listen on the
// Service addresses and any public interface). Without $POD_IP, loopback.
const (
	metricsHelp = `address for Prometheus /metrics, plain HTTP (default $POD_IP, else 127.0.0.1; ":PORT" for every interface; "0": off)`
	healthHelp  = `address for /healthz and /readyz (default $POD_IP, else 127.0.0.1; "0": off)`
	statusHelp  = `address for the read-only status page, e.g. ":7476" ("0": off): what "ferrolb status" shows, as HTML that refreshes itself, and as JSON at /status.json`
	// The scraper needs a bearer token and a ClusterRole with nonResourceURLs ["/metrics"], verbs ["get"].
	metricsSecureHelp = "serve metrics over HTTPS to callers with a bearer token that may GET /metrics (TokenReview and SubjectAccessReview); self-signed certificate"
)

func podAddr(port int) string {
	return net.JoinHostPort(envOr("POD_IP", "127.0.0.1"), strconv.Itoa(port))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
