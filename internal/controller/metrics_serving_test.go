package controller_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// TestMetricsSecure: with --metrics-secure, /metrics is served over HTTPS to a caller whose
// token the real API server accepts and who may GET /metrics, and to nobody else.
func TestMetricsSecure(t *testing.T) {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "metrics-secure"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	allowed, denied := token("prometheus"), token("someone")
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "metrics-secure-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "metrics-secure-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "prometheus"}}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	stop := testrun.Background(t, "controller --metrics-secure", func(ctx context.Context) error {
		return controller.Run(ctx, env.Config, controller.Options{MetricsAddr: addr, MetricsSecure: true, HealthAddr: "0", Restartable: true})
	})
	defer stop()

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the serving certificate is self-signed
	get := func(scheme, tok string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/metrics", scheme, addr), nil)
		if err != nil {
			return 0, "", err
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	// Wait for the server, then check each caller.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if code, _, err := get("https", allowed); err == nil && code == http.StatusOK {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the allowed scraper never got /metrics: %d, %v", code, err)
		}
	}
	if code, body, err := get("https", allowed); err != nil || code != http.StatusOK || !strings.Contains(body, "ferrolb_") {
		t.Errorf("allowed scraper: %d, %v, FerroLB metrics in the body: %v", code, err, strings.Contains(body, "ferrolb_"))
	}
	for _, c := range []struct {
		name, tok string
		want      int
	}{{"no token", "", http.StatusUnauthorized}, {"a token of another account", denied, http.StatusForbidden},
		// The API server's TokenReview refuses it with an error, which controller-runtime's
		// filter answers with 500: what matters is that no metrics are served.
		{"a forged token", "not-a-token", http.StatusInternalServerError}} {
		if code, body, err := get("https", c.tok); err != nil || code != c.want || strings.Contains(body, "ferrolb_") {
			t.Errorf("%s: %d, %v, want %d and no metrics", c.name, code, err, c.want)
		}
	}
	if code, _, err := get("http", ""); err == nil && code == http.StatusOK {
		t.Error("plain HTTP got metrics")
	}
}
