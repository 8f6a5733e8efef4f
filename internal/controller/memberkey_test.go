package controller_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// TestMemberSecret: the controller creates the speakers' heartbeat Secret when it is absent,
// with a key of the chart's form (32 random bytes in base64), and leaves one that exists as it
// is, even one it would not have made; it reads the Secret by name only (no list, no watch).
func TestMemberSecret(t *testing.T) {
	ctx := context.Background()
	const name = "ferrolb-memberlist"

	// Absent: created.
	ns := newNamespace(t, "member-secret")
	rec := &requests{}
	stop := startControllerWith(t, rec, controller.Options{Namespace: ns, MemberSecret: name})
	var s corev1.Secret
	poll(t, func() string {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
			return "the controller made no heartbeat Secret: " + err.Error()
		}
		return ""
	})
	stop()
	key := s.Data[controller.MemberKey]
	raw, err := base64.StdEncoding.DecodeString(string(key))
	if len(key) != 44 || err != nil || len(raw) != 32 {
		t.Errorf("key %q (%d bytes): want 32 random bytes in base64 (44 characters); decoded %d bytes, %v", key, len(key), len(raw), err)
	}
	if len(s.Data) != 1 || s.Type != corev1.SecretTypeOpaque {
		t.Errorf("Secret %+v: want an Opaque Secret with the key alone", s)
	}
	rec.wantSecretCalls(t, "GET /api/v1/namespaces/"+ns+"/secrets/"+name, "POST /api/v1/namespaces/"+ns+"/secrets")

	// Another namespace, another Secret: another key.
	ns2 := newNamespace(t, "member-secret")
	stop = startControllerWith(t, &requests{}, controller.Options{Namespace: ns2, MemberSecret: name})
	var s2 corev1.Secret
	poll(t, func() string {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns2, Name: name}, &s2); err != nil {
			return "the controller made no heartbeat Secret: " + err.Error()
		}
		return ""
	})
	stop()
	if string(s2.Data[controller.MemberKey]) == string(key) {
		t.Errorf("two Secrets with the same key %q: the key is not random", key)
	}

	// Present (here with a key the speakers would refuse as too short): untouched.
	ns3 := newNamespace(t, "member-secret")
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns3, Name: name},
		Data: map[string][]byte{controller.MemberKey: []byte("short"), "other": []byte("kept")}}
	if err := env.Client.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	rec = &requests{}
	stop = startControllerWith(t, rec, controller.Options{Namespace: ns3, MemberSecret: name})
	poll(t, func() string {
		if !rec.has("GET /api/v1/namespaces/" + ns3 + "/secrets/" + name + " 200") {
			return "the controller did not read the existing Secret"
		}
		return ""
	})
	stop()
	var after corev1.Secret
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(mine), &after); err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != mine.ResourceVersion || string(after.Data[controller.MemberKey]) != "short" || string(after.Data["other"]) != "kept" {
		t.Errorf("existing Secret changed: resourceVersion %s -> %s, data %q", mine.ResourceVersion, after.ResourceVersion, after.Data)
	}
	rec.wantSecretCalls(t, "GET /api/v1/namespaces/"+ns3+"/secrets/"+name)

	// None asked for: none made.
	ns4 := newNamespace(t, "member-secret")
	rec = &requests{}
	stop = startControllerWith(t, rec, controller.Options{Namespace: ns4})
	poll(t, func() string { // the controller is working: it lists pools
		if !rec.has("GET /apis/ferrolb.io/v1alpha1/ippools") {
			return "the controller has not started"
		}
		return ""
	})
	stop()
	rec.wantSecretCalls(t)
}

// startControllerWith runs a controller with opts (and no metrics or probes) whose requests rec
// records, until the test ends or the returned stop is called.
func startControllerWith(t *testing.T, rec *requests, opts controller.Options) (stop func()) {
	t.Helper()
	opts.MetricsAddr, opts.HealthAddr, opts.Restartable = "0", "0", true
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = rec.wrap
	return testrun.Background(t, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, cfg, opts)
	})
}

// requests records "METHOD path status" of every request made through wrap.
type requests struct {
	mu   sync.Mutex
	seen []string
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (q *requests) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		q.mu.Lock()
		q.seen = append(q.seen, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, code))
		q.mu.Unlock()
		return resp, err
	})
}

// has reports whether a request recorded starts with prefix.
func (q *requests) has(prefix string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range q.seen {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// wantSecretCalls fails unless the requests about Secrets were exactly want (method and path),
// in order.
func (q *requests) wantSecretCalls(t *testing.T, want ...string) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	var got []string
	for _, s := range q.seen {
		if strings.Contains(s, "/secrets") {
			got = append(got, s[:strings.LastIndex(s, " ")])
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests about Secrets:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
