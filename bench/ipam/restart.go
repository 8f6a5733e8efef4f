package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/kubetest"
)

// The restart measurement (-restart): N pending Services, the controller started as a
// process of its own, killed with SIGKILL once half of them have an address (in the middle
// of its backlog, status writes in flight), and started again at once. Measured: from the
// kill to every Service addressed; checked: every Service has one address, no address is
// held twice, no address a Service had before the kill changed. With leader election (as
// deployed) the new process waits for the killed one's Lease to expire (15 s); without it
// (a single replica) the figure is the rebuild from the Services' status alone.

// childEnv holds the kubeconfig of a controller child; childLeaderEnv says whether it runs
// leader election.
const (
	childEnv       = "FERROLB_BENCH_CONTROLLER"
	childLeaderEnv = "FERROLB_BENCH_LEADER_ELECT"
)

// runChild is the child's main: the controller until SIGTERM (or SIGKILL).
func runChild() int {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv(childEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = controller.Run(ctx, cfg, controller.Options{MetricsAddr: "0", HealthAddr: "0", QPS: 500, Burst: 1000, Workers: 4,
		LeaderElection: os.Getenv(childLeaderEnv) == "true", LeaseNamespace: "default"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		return 1
	}
	return 0
}

type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startChild(kubeconfig, logFile string, leaderElect bool) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) //nolint:gosec // our own temporary directory
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+kubeconfig, fmt.Sprintf("%s=%v", childLeaderEnv, leaderElect))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(c.done) }()
	return c, nil
}

func (c *child) signal(s os.Signal) {
	_ = c.cmd.Process.Signal(s)
	<-c.done
}

func runRestart(n, runs, parallel int) (err error) {
	env, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, env.Stop()) }()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ferrolb-bench-restart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	if err := createPool(ctx, env); err != nil {
		return err
	}

	fmt.Printf("FerroLB controller killed (SIGKILL) with half of %d pending Services addressed, started again at once; kube-apiserver + etcd on this machine\n\n", n)
	fmt.Printf("%-16s %-3s %10s %14s %14s %14s %10s %8s\n", "leader election", "#", "at kill", "kill->lease", "kill->all (s)", "start->all (s)", "held twice", "moved")
	for i := range runs {
		for _, le := range []bool{true, false} {
			r, err := restartRun(ctx, cs, kubeconfig, filepath.Join(dir, fmt.Sprintf("controller-%d-%v.log", i, le)), fmt.Sprintf("restart-%v-%d", le, i), n, parallel, le)
			if err != nil {
				return err
			}
			lease := "-"
			if le {
				lease = fmt.Sprintf("%.2f s", r.lease.Seconds())
			}
			fmt.Printf("%-16v %-3d %10d %14s %14.2f %14.2f %10d %8d\n", le, i+1, r.atKill, lease, r.killToAll.Seconds(), r.startToAll.Seconds(), r.twice, r.moved)
			if r.twice > 0 || r.moved > 0 || r.notOne > 0 {
				return fmt.Errorf("run %d: %d addresses held twice, %d moved, %d Services without exactly one address", i+1, r.twice, r.moved, r.notOne)
			}
		}
	}
	return nil
}

type restartResult struct {
	atKill                int
	lease                 time.Duration // kill -> the new process holds the Lease
	killToAll, startToAll time.Duration
	twice, moved, notOne  int
}

func restartRun(ctx context.Context, cs kubernetes.Interface, kubeconfig, logFile, ns string, n, parallel int, le bool) (restartResult, error) {
	var r restartResult
	if err := createNamespace(ctx, cs, ns); err != nil {
		return r, err
	}
	w, err := newWaiter(ctx, cs, ns, n)
	if err != nil {
		return r, err
	}
	if _, err := createServices(ctx, cs, ns, n, parallel); err != nil {
		return r, err
	}
	start := time.Now()
	first, err := startChild(kubeconfig, logFile, le)
	if err != nil {
		return r, err
	}
	var second *child
	var killed time.Time
	var startErr error
	leased := make(chan time.Duration, 1)
	w.at(n/2, func() {
		holder := leaseHolder(ctx, cs)
		first.signal(syscall.SIGKILL)
		killed = time.Now()
		r.atKill = len(w.seen)
		second, startErr = startChild(kubeconfig, logFile, le)
		if le {
			// The new process takes the Lease once the killed one's has expired.
			go func() {
				for ctx.Err() == nil {
					if h := leaseHolder(ctx, cs); h != "" && h != holder {
						leased <- time.Since(killed)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	})
	err = w.wait(5 * time.Minute)
	if le && err == nil {
		select {
		case r.lease = <-leased:
		case <-time.After(time.Minute):
			err = errors.New("the restarted controller never held the Lease")
		}
	}
	if second != nil {
		second.signal(syscall.SIGTERM)
	} else {
		first.signal(syscall.SIGTERM)
	}
	if err := errors.Join(err, startErr); err != nil {
		return r, fmt.Errorf("%w (controller logs: %s)", err, logFile)
	}
	r.killToAll, r.startToAll = w.last().Sub(killed), w.last().Sub(start)
	r.moved = w.moved
	list, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return r, err
	}
	holders := map[string]int{}
	for _, s := range list.Items {
		if len(s.Status.LoadBalancer.Ingress) != 1 {
			r.notOne++
			continue
		}
		holders[s.Status.LoadBalancer.Ingress[0].IP]++
	}
	for _, c := range holders {
		if c > 1 {
			r.twice++
		}
	}
	return r, nil
}

// leaseHolder is the controller's Lease's holder, "" when there is none.
func leaseHolder(ctx context.Context, cs kubernetes.Interface) string {
	l, err := cs.CoordinationV1().Leases("default").Get(ctx, "ferrolb-controller", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
