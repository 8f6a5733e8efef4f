package status_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/status"
)

// syncBuffer is a bytes.Buffer Watch may write to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatch: --watch draws once, draws again when a Service changes (and not while nothing
// does), and returns when its context ends (ctrl-C).
func TestWatch(t *testing.T) {
	fixtures(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "status-watch"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "watched"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if err := env.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Client.Delete(ctx, svc) }()

	for _, format := range status.Formats {
		t.Run(format, func(t *testing.T) {
			var out syncBuffer
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- status.Watch(wctx, source(t, env.Config), status.WatchOptions{Interval: 50 * time.Millisecond,
					Format: format, Out: &out, Errors: io.Discard, Terminal: true})
			}()
			frames := func() int {
				switch format {
				case status.FormatJSON:
					return strings.Count(out.String(), "\"format\": ")
				case status.FormatYAML:
					return strings.Count(out.String(), "---\n")
				}
				return strings.Count(out.String(), "\x1b[2J")
			}
			waitFor(t, "the first frame", func() bool { return frames() == 1 })
			time.Sleep(300 * time.Millisecond) // six readings of a cluster that does not change
			if n := frames(); n != 1 {
				t.Errorf("%d frames while nothing changed, want 1", n)
			}
			node := "node-" + format
			setAnnounced(t, svc, "announced: 192.0.2.201 by "+node+" (layer 2 on eth0)")
			waitFor(t, "a frame with the new announcer", func() bool {
				return frames() == 2 && strings.Contains(out.String(), "by "+node)
			})
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Watch = %v after its context ended, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Watch did not return within 5s of its context ending")
			}
		})
	}
}

// setAnnounced gives svc an address and sets its Announced condition to message, as a
// speaker does.
func setAnnounced(t *testing.T, svc *corev1.Service, message string) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.201"}}
	meta.SetStatusCondition(&svc.Status.Conditions, metav1.Condition{Type: config.ConditionAnnounced,
		Status: metav1.ConditionTrue, Reason: "Layer2", Message: message})
	if err := env.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: no %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
