package controller_test

import (
	"context"
	"os"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Run(m, &env))
}

// TestLeaderElection: the controller takes the Lease, and gives it back when stopped so the
// next replica need not wait for it to expire.
func TestLeaderElection(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "leader-election"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(runCtx, env.Config, controller.Options{
			MetricsAddr: "0", HealthAddr: "0", LeaderElection: true, LeaseNamespace: ns.Name, Restartable: true,
		})
	}()

	key := types.NamespacedName{Namespace: ns.Name, Name: "ferrolb-controller"}
	lease := &coordinationv1.Lease{}
	holder := func() string {
		if err := env.Client.Get(ctx, key, lease); err != nil || lease.Spec.HolderIdentity == nil {
			return ""
		}
		return *lease.Spec.HolderIdentity
	}
	poll(t, func() string {
		if holder() == "" {
			return "the controller does not hold the Lease"
		}
		return ""
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after its context ended, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
	if h := holder(); h != "" {
		t.Errorf("Lease still held by %q after the controller stopped; want it released", h)
	}
}

// poll calls check every 50 ms until it returns "", and fails the test with the last thing
// it said if that takes more than 30 s.
func poll(t *testing.T, check func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %s", msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
