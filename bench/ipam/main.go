// Command ipam measures the controller end to end against a real kube-apiserver and etcd
// (built by hack/envtest.sh) and prints a table:
//
//   - backlog: N pending LoadBalancer Services exist, then the controller starts; the time
//     until every one has an address in its status.
//   - churn: the controller runs while a client creates N Services from several goroutines;
//     the time from each create to its address (p50, p99, max).
//   - restart (-restart, instead of the two): the controller killed in the middle of a
//     backlog and started again (restart.go).
//
// Run: go run ./bench/ipam [-n 1000] [-runs 3]; go run ./bench/ipam -restart -n 500
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/kubetest"
)

func main() {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	restart := flag.Bool("restart", false, "measure a controller killed in the middle of its backlog instead (restart.go)")
	n := flag.Int("n", 1000, "Services per run")
	runs := flag.Int("runs", 3, "runs of each measurement")
	parallel := flag.Int("parallel", 8, "client goroutines creating Services in the churn run")
	workers := flag.Int("workers", 4, "the controller's --workers")
	flag.Parse()
	if *restart {
		if err := runRestart(*n, *runs, *parallel); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*n, *runs, *parallel, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(n, runs, parallel, workers int) (err error) {
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
	if err := createPool(ctx, env); err != nil {
		return err
	}

	fmt.Printf("FerroLB controller (%d workers) against kube-apiserver + etcd on this machine, %d Services per run, %d creating clients\n\n", workers, n, parallel)
	fmt.Printf("%-8s %-4s %12s %12s %12s %12s\n", "run", "#", "all (s)", "p50 (ms)", "p99 (ms)", "max (ms)")
	var backlog, churnP50, churnP99 []time.Duration
	for i := range runs {
		// (a) Backlog: Services first, controller afterwards.
		ns := fmt.Sprintf("backlog-%d", i)
		if err := createNamespace(ctx, cs, ns); err != nil {
			return err
		}
		w, err := newWaiter(ctx, cs, ns, n)
		if err != nil {
			return err
		}
		if _, err := createServices(ctx, cs, ns, n, parallel); err != nil {
			return err
		}
		start := time.Now()
		stop := startController(ctx, env, workers)
		if err := w.wait(5 * time.Minute); err != nil {
			stop()
			return err
		}
		all := w.last().Sub(start)
		backlog = append(backlog, all)
		fmt.Printf("%-8s %-4d %12.2f %12s %12s %12s\n", "backlog", i+1, all.Seconds(), "", "", "")

		// (b) Churn: controller running, Services created in parallel.
		ns = fmt.Sprintf("churn-%d", i)
		if err := createNamespace(ctx, cs, ns); err != nil {
			stop()
			return err
		}
		w, err = newWaiter(ctx, cs, ns, n)
		if err != nil {
			stop()
			return err
		}
		// The waiter reads its watch while the Services are created, so each address is seen
		// when it is written.
		waited := make(chan error, 1)
		go func() { waited <- w.wait(5 * time.Minute) }()
		start = time.Now()
		created, err := createServices(ctx, cs, ns, n, parallel)
		if err != nil {
			stop()
			return err
		}
		createdIn := time.Since(start)
		if err := <-waited; err != nil {
			stop()
			return err
		}
		stop()
		lat := w.latencies(created)
		p50, p99, max := pct(lat, 50), pct(lat, 99), lat[len(lat)-1]
		churnP50, churnP99 = append(churnP50, p50), append(churnP99, p99)
		fmt.Printf("%-8s %-4d %12.2f %12.1f %12.1f %12.1f   (creates took %.2f s)\n", "churn", i+1, w.last().Sub(start).Seconds(), ms(p50), ms(p99), ms(max), createdIn.Seconds())
	}
	slices.Sort(backlog)
	slices.Sort(churnP50)
	slices.Sort(churnP99)
	fmt.Printf("\nmedian of %d runs: backlog of %d addressed in %.2f s (MetalLB's controller: 13.1 s here); churn p50 %.1f ms, p99 %.1f ms\n",
		runs, n, backlog[len(backlog)/2].Seconds(), ms(churnP50[len(churnP50)/2]), ms(churnP99[len(churnP99)/2]))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(sorted []time.Duration, p int) time.Duration {
	return sorted[(len(sorted)-1)*p/100]
}

func startController(ctx context.Context, env *kubetest.Env, workers int) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, env.Config, controller.Options{
			MetricsAddr: "0", HealthAddr: "0", QPS: 500, Burst: 1000, Workers: workers, Restartable: true,
		})
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "controller:", err)
		}
	}
}

func createPool(ctx context.Context, env *kubetest.Env) error {
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "10.0.0.0/8"}}}}
	return env.Client.Create(ctx, pool)
}

func createNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// createServices creates n LoadBalancer Services from parallel goroutines and returns when
// each create was sent.
func createServices(ctx context.Context, cs kubernetes.Interface, ns string, n, parallel int) (map[string]time.Time, error) {
	var mu sync.Mutex
	sent := make(map[string]time.Time, n)
	next := make(chan int)
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("svc-%d", i)
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
					Spec: corev1.ServiceSpec{
						Type: corev1.ServiceTypeLoadBalancer,
						// Thousands of Services would exhaust the 2,768 NodePorts.
						AllocateLoadBalancerNodePorts: ptr.To(false),
						Ports:                         []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
						Selector:                      map[string]string{"app": name},
					},
				}
				t := time.Now()
				if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				sent[name] = t
				mu.Unlock()
			}
		}()
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return sent, err
}

// waiter watches a namespace and records when each Service first has an address.
type waiter struct {
	ctx  context.Context
	cs   kubernetes.Interface
	ns   string
	w    watch.Interface
	n    int
	seen map[string]time.Time
	// addr is each Service's first address; moved counts Services seen with another one
	// later.
	addr  map[string]string
	moved int
	// hook runs (in wait) when hookAt Services have an address.
	hookAt int
	hook   func()
}

func newWaiter(ctx context.Context, cs kubernetes.Interface, ns string, n int) (*waiter, error) {
	w := &waiter{ctx: ctx, cs: cs, ns: ns, n: n, seen: make(map[string]time.Time, n), addr: make(map[string]string, n)}
	return w, w.rewatch()
}

// at runs f once count Services have an address, from wait.
func (w *waiter) at(count int, f func()) { w.hookAt, w.hook = count, f }

// rewatch lists the namespace (recording what is addressed already) and watches from there:
// the API server may close a watch that falls behind under load.
func (w *waiter) rewatch() error {
	list, err := w.cs.CoreV1().Services(w.ns).List(w.ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range list.Items {
		w.observe(&list.Items[i])
	}
	w.w, err = w.cs.CoreV1().Services(w.ns).Watch(w.ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	return err
}

func (w *waiter) observe(svc *corev1.Service) {
	if len(svc.Status.LoadBalancer.Ingress) == 0 {
		return
	}
	ip := svc.Status.LoadBalancer.Ingress[0].IP
	if first, ok := w.addr[svc.Name]; ok && first != ip {
		w.moved++
	}
	if _, done := w.seen[svc.Name]; !done {
		w.seen[svc.Name] = time.Now()
		w.addr[svc.Name] = ip
		if w.hook != nil && len(w.seen) >= w.hookAt {
			hook := w.hook
			w.hook = nil
			hook()
		}
	}
}

func (w *waiter) wait(timeout time.Duration) error {
	defer func() { w.w.Stop() }()
	deadline := time.After(timeout)
	for len(w.seen) < w.n {
		select {
		case ev, ok := <-w.w.ResultChan():
			if !ok {
				if err := w.rewatch(); err != nil {
					return fmt.Errorf("watch closed with %d of %d addressed: %w", len(w.seen), w.n, err)
				}
				continue
			}
			if svc, ok := ev.Object.(*corev1.Service); ok {
				w.observe(svc)
			}
		case <-deadline:
			return fmt.Errorf("timed out with %d of %d addressed", len(w.seen), w.n)
		}
	}
	return nil
}

func (w *waiter) last() time.Time {
	var t time.Time
	for _, s := range w.seen {
		if s.After(t) {
			t = s
		}
	}
	return t
}

func (w *waiter) latencies(created map[string]time.Time) []time.Duration {
	out := make([]time.Duration, 0, len(w.seen))
	for name, t := range w.seen {
		out = append(out, t.Sub(created[name]))
	}
	slices.Sort(out)
	return out
}
