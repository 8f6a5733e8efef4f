package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ferrolb/ferrolb/internal/datapath"
	"github.com/ferrolb/ferrolb/internal/speaker"
)

// The lab's processes inside namespaces (a node's speaker, a pod's web server) are the
// running binary itself, re-executed under `ip netns exec` with childEnv holding what to
// run: the ferrolb-lab binary for `ferrolb-lab`, the test binary for the e2e tests. Both call
// RunChild first thing in main (TestMain) when IsChild says so. A speaker must run wholly
// inside its node's namespace because GoBGP opens sockets from goroutines of its own.
const childEnv = "FERROLB_LAB_CHILD"

type childSpec struct {
	Role       string // "speaker" or "backend"
	Node       string
	Kubeconfig string        `json:",omitempty"`
	Datapath   datapath.Kind `json:",omitempty"` // speaker: its --datapath
	StateDir   string        `json:",omitempty"` // speaker: its --state-dir
	Name       string        `json:",omitempty"` // backend: the pod's name
	Listen     string        `json:",omitempty"` // backend: the address to serve on
}

// IsChild reports whether this process is one of the lab's children.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// RunChild runs the child this process was started as, until SIGTERM, and returns the
// process's exit code.
func RunChild() int {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "lab child:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch spec.Role {
	case "speaker":
		ctrl.SetLogger(zap.New())
		cfg, cerr := clientcmd.BuildConfigFromFlags("", spec.Kubeconfig)
		if cerr != nil {
			err = cerr
			break
		}
		err = speaker.Run(ctx, cfg, speaker.Options{
			NodeName: spec.Node, MetricsAddr: "127.0.0.1:7474", HealthAddr: "127.0.0.1:7475", Namespace: Namespace,
			Datapath: spec.Datapath, StateDir: spec.StateDir,
		})
	case "backend":
		err = serveBackend(ctx, spec.Listen, fmt.Sprintf("%s on %s\n", spec.Name, spec.Node))
	default:
		err = fmt.Errorf("unknown role %q", spec.Role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab %s %s: %v\n", spec.Role, spec.Node, err)
		return 1
	}
	return 0
}

// serveBackend is a pod: an HTTP server that says who it is, on both families.
func serveBackend(ctx context.Context, listen, hello string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(hello))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
