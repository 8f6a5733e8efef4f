package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/status"
)

// addStatusPage serves the status page (internal/status) on opts.StatusAddr, on every
// replica, leader or not. Pools, BGPPeers and Services come from the informer cache the
// controller keeps anyway; the speaker DaemonSet and its pods, read only for the page, are
// read from the API server (a Role allows it in the controller's namespace only), once a
// second at most however many browsers poll.
func addStatusPage(mgr ctrl.Manager, opts Options) error {
	if opts.StatusAddr == "" || opts.StatusAddr == "0" {
		return nil
	}
	page := status.NewPage(status.Source{
		Reader:            mgr.GetClient(),
		SpeakerReader:     mgr.GetAPIReader(),
		Namespace:         cmp.Or(opts.SpeakerNamespace, opts.LeaseNamespace),
		LoadBalancerClass: cmp.Or(opts.LoadBalancerClass, config.LoadBalancerClass),
		Server:            mgr.GetConfig().Host,
	})
	return mgr.Add(&statusServer{addr: opts.StatusAddr, handler: page})
}

// statusServer is the page's HTTP server, a manager runnable that needs no leadership.
type statusServer struct {
	addr    string
	handler http.Handler
}

func (s *statusServer) NeedLeaderElection() bool { return false }

func (s *statusServer) Start(ctx context.Context) error {
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("status page: %w", err)
	}
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	logf.FromContext(ctx).Info("serving the status page", "address", l.Addr().String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err = srv.Serve(l)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("status page: %w", err)
}
