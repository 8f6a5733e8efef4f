// Package rbac checks the roles deploy/ferrolb.yaml gives the controller and the speaker
// against the real API server: it applies them, runs both components as their
// ServiceAccounts through the usual flows, records every request they make, and fails when
// the API server refused one (the roles are too narrow) or when a verb the roles grant was
// never used and is not listed here with the reason it is needed (too wide). It also asks
// the API server directly (SubjectAccessReview) about the grants that matter most.
package rbac

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/kubetest"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
	"github.com/ferrolb/ferrolb/internal/speaker"
	"github.com/ferrolb/ferrolb/internal/status"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// The names the chart (charts/ferrolb, rendered into deploy/ferrolb.yaml) gives the
// components' namespace and ServiceAccounts.
const (
	namespace    = "ferrolb-system"
	controllerSA = "ferrolb-controller"
	speakerSA    = "ferrolb-speaker"
	// memberSecret holds the speakers' heartbeat key; the controller creates it when absent.
	memberSecret = "ferrolb-memberlist"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	os.Exit(kubetest.Run(m, &env))
}

// grant is one verb on one resource ("services/status" for a subresource) that a
// ServiceAccount's bindings give it: cluster-wide (namespace "") or in one namespace.
type grant struct {
	sa, namespace, group, resource, verb string
}

func (g grant) String() string {
	where := "cluster-wide"
	if g.namespace != "" {
		where = "in " + g.namespace
	}
	return fmt.Sprintf("%s: %s %s %s", g.sa, g.verb, groupResource(g.group, g.resource), where)
}

func groupResource(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// unexercised are the verbs the roles grant that the flows below do not reach, each with why
// it is needed all the same. Empty while every granted verb is used; an entry needs a
// reason a reviewer can check in the code.
var unexercised = func() map[grant]string {
	m := map[grant]string{}
	// Both components serve authenticated metrics with --metrics-secure (off by default,
	// so off here): each scrape is checked by a TokenReview and a SubjectAccessReview.
	// internal/controller's TestMetricsSecure exercises them.
	for _, sa := range []string{controllerSA, speakerSA} {
		m[grant{sa: sa, group: "authentication.k8s.io", resource: "tokenreviews", verb: "create"}] = "--metrics-secure: TokenReview of a scraper's token"
		m[grant{sa: sa, group: "authorization.k8s.io", resource: "subjectaccessreviews", verb: "create"}] = "--metrics-secure: SubjectAccessReview of a scraper's GET /metrics"
	}
	return m
}()

var (
	setupOnce sync.Once
	grants    []grant
	setupErr  error
)

// setup applies, once for the package, the RBAC of deploy/ferrolb.yaml and the stand-ins
// for MetalLB's and Cilium's CRDs (the controller runs with --compat), and returns what the
// bindings grant the two ServiceAccounts.
func setup(t *testing.T) []grant {
	t.Helper()
	setupOnce.Do(func() {
		grants, setupErr = applyRBAC(context.Background())
		if setupErr != nil {
			return
		}
		root, err := kubetest.RepoRoot()
		if err != nil {
			setupErr = err
			return
		}
		_, setupErr = envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
			Paths: []string{filepath.Join(root, "internal", "controller", "testdata", "compat-crds.yaml")},
		})
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return grants
}

// applyRBAC creates the namespace, ServiceAccounts, roles and bindings of
// deploy/ferrolb.yaml (the CRDs are installed already, and nothing runs the workloads here)
// and resolves the bindings of the two ServiceAccounts to grants.
func applyRBAC(ctx context.Context) ([]grant, error) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "ferrolb.yaml"))
	if err != nil {
		return nil, err
	}
	rules := map[string][]rbacv1.PolicyRule{} // by "Kind namespace/name"
	var bindings []*unstructured.Unstructured
	for i, doc := range strings.Split(string(data), "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			return nil, fmt.Errorf("deploy/ferrolb.yaml document %d: %w", i, err)
		}
		switch u.GetKind() {
		case "Namespace", "ServiceAccount":
		case "ClusterRole", "Role":
			var r rbacv1.Role // a ClusterRole's rules have the same shape
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
				return nil, fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
			}
			rules[u.GetKind()+" "+u.GetNamespace()+"/"+u.GetName()] = r.Rules
		case "ClusterRoleBinding", "RoleBinding":
			bindings = append(bindings, u)
		default:
			continue
		}
		if err := env.Client.Create(ctx, u); err != nil {
			return nil, fmt.Errorf("create %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	var out []grant
	for _, u := range bindings {
		var b rbacv1.RoleBinding // a ClusterRoleBinding has the same shape
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &b); err != nil {
			return nil, fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
		roleNS := ""
		if b.RoleRef.Kind == "Role" {
			roleNS = b.Namespace
		}
		rs, ok := rules[b.RoleRef.Kind+" "+roleNS+"/"+b.RoleRef.Name]
		if !ok {
			return nil, fmt.Errorf("%s %s binds %s %s, which deploy/ferrolb.yaml lacks", u.GetKind(), b.Name, b.RoleRef.Kind, b.RoleRef.Name)
		}
		for _, s := range b.Subjects {
			if s.Kind != rbacv1.ServiceAccountKind || s.Namespace != namespace {
				continue
			}
			for _, r := range rs {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							out = append(out, grant{sa: s.Name, namespace: b.Namespace, group: g, resource: res, verb: v})
						}
					}
				}
			}
		}
	}
	return out, nil
}

// call is one request a component made, as the API server's authorizer sees it.
type call struct {
	verb, group, resource, namespace string // resource with "/subresource"
	// watchList is a watch that begins with the collection's current objects (client-go's
	// WatchListClient, on by default): the informer's list, streamed.
	watchList bool
	code      int // the HTTP status; 0 when no response came
}

func (c call) String() string {
	where := ""
	if c.namespace != "" {
		where = " in " + c.namespace
	}
	return fmt.Sprintf("%s %s%s: HTTP %d", c.verb, groupResource(c.group, c.resource), where, c.code)
}

// requestCall reads what the API server authorizes from a request: the verb and the
// resource, as the API server's RequestInfo does, for the paths client-go uses. Discovery
// and other non-resource paths are not calls (every authenticated user may read them).
func requestCall(method string, u *url.URL) (call, bool) {
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	var c call
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		c.group, parts = parts[1], parts[3:]
	default:
		return c, false
	}
	if parts[0] == "namespaces" && len(parts) >= 3 {
		c.namespace, parts = parts[1], parts[2:]
	}
	c.resource = parts[0]
	name := ""
	if len(parts) > 1 {
		name = parts[1]
	}
	if len(parts) > 2 {
		c.resource += "/" + parts[2]
	}
	q := u.Query()
	switch method {
	case http.MethodGet:
		switch {
		case q.Get("watch") == "true" || q.Get("watch") == "1":
			c.verb, c.watchList = "watch", q.Get("sendInitialEvents") == "true"
		case name != "":
			c.verb = "get"
		default:
			c.verb = "list"
		}
	case http.MethodPost:
		c.verb = "create"
	case http.MethodPut:
		c.verb = "update"
	case http.MethodPatch:
		c.verb = "patch"
	case http.MethodDelete:
		c.verb = "delete"
		if name == "" {
			c.verb = "deletecollection"
		}
	default:
		return c, false
	}
	return c, true
}

// recorder keeps every request made with its config.
type recorder struct {
	sa    string
	mu    sync.Mutex
	calls []call
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// config reaches the API server as the ServiceAccount (the administrator's credentials
// impersonating it) and records each request and its answer.
func (r *recorder) config() *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user(r.sa)}
	cfg.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(req)
			if c, ok := requestCall(req.Method, req.URL); ok {
				if resp != nil {
					c.code = resp.StatusCode
				}
				r.mu.Lock()
				r.calls = append(r.calls, c)
				r.mu.Unlock()
			}
			return resp, err
		})
	}
	return cfg
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// forbidden lists the requests the API server refused.
func (r *recorder) forbidden() []string {
	var out []string
	for _, c := range r.snapshot() {
		if c.code == http.StatusForbidden {
			out = append(out, r.sa+": "+c.String())
		}
	}
	return out
}

func user(sa string) string { return "system:serviceaccount:" + namespace + ":" + sa }

// uses tells whether c is a use of g. A cluster-wide grant counts only what a Role in the
// components' own namespace could not have served; a list counts as used by a watch that
// streams the list (a reflector lists when the API server cannot stream, so both are needed).
func (g grant) uses(c call) bool {
	if c.group != g.group || c.resource != g.resource || c.code == http.StatusForbidden {
		return false
	}
	if (g.namespace != "" && c.namespace != g.namespace) || (g.namespace == "" && c.namespace == namespace) {
		return false
	}
	return c.verb == g.verb || g.verb == "list" && c.verb == "watch" && c.watchList
}

// TestRolesSufficientAndMinimal runs the controller (leader-elected, with --compat) and a
// speaker (layer 2 and BGP with an MD5 Secret) as their ServiceAccounts, bound only to the
// roles in deploy/ferrolb.yaml, through the usual flows: a pool, a Service given an address
// and announced, pool, BGPPeer and policy status, Events, the heartbeat Secret created, the
// status page read, the Lease taken and given back. The API server must refuse none of their
// requests, and each verb the roles grant must have been used (or be listed in unexercised
// with its reason).
func TestRolesSufficientAndMinimal(t *testing.T) {
	grants := setup(t)
	ctx := context.Background()
	ctrlRec, spkRec := &recorder{sa: controllerSA}, &recorder{sa: speakerSA}
	poll := func(what string, check func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !check() {
			if time.Now().After(deadline) {
				t.Fatalf("after 60s: %s; the API server refused: %q", what, append(ctrlRec.forbidden(), spkRec.forbidden()...))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	create := func(objs ...client.Object) {
		t.Helper()
		for _, o := range objs {
			if err := env.Client.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The node: a namespace with an eth0 that has carrier, for the L2Policy to select.
	nodeNS, lan := netns.ForTest(t, "rbac-node"), netns.ForTest(t, "rbac-lan")
	if err := netns.Veth(nodeNS, "eth0", lan, "eth0"); err != nil {
		t.Fatal(err)
	}
	nodeNS.MustRun(t, "ip", "addr", "add", "192.0.2.11/24", "dev", "eth0")
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "rbac-node"}}
	create(node)
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.11"}}
	if err := env.Client.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}

	// What an administrator applies: a pool, layer 2 announcement, a BGP peer with an MD5
	// Secret in the speaker's namespace, and one whose Secret is elsewhere, which the speaker
	// refuses (with an Event, repeated on every reconcile: client-go patches it as a series).
	// GoBGP dials the peers from the test's own network namespace, where nothing listens on
	// the loopback's port 1: the sessions stay down, which is all the status needs.
	create(
		&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.100/30"}}}},
		&v1.L2Policy{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}, Spec: v1.L2PolicySpec{Interfaces: []string{"eth0"}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "rbac-md5"},
			Data: map[string][]byte{speaker.PasswordKey: []byte("md5 secret")}},
		&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "rbac-md5"}, Spec: v1.BGPPeerSpec{
			PeerAddress: "127.0.0.1", PeerPort: 1, PeerASN: 64512, LocalASN: 64513, RouterID: "192.0.2.11",
			PasswordSecretRef: &v1.SecretReference{Name: "rbac-md5"}}},
		&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "rbac-foreign-secret"}, Spec: v1.BGPPeerSpec{
			PeerAddress: "127.0.0.2", PeerPort: 1, PeerASN: 64512, LocalASN: 64513,
			PasswordSecretRef: &v1.SecretReference{Namespace: "kube-system", Name: "rbac-md5"}}},
		&v1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}, Spec: v1.BGPAdvertisementSpec{Pools: []string{"rbac"}}},
		&v1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "rbac"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rbac-demo"}},
	)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "rbac-demo", Name: "web"}, Spec: corev1.ServiceSpec{
		Type:  corev1.ServiceTypeLoadBalancer,
		Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
	}}
	create(svc)

	// The controller serves its status page too (off by default), which reads the speaker
	// DaemonSet and its pods in its namespace.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	statusAddr := l.Addr().String()
	l.Close()
	stopController := testrun.Background(t, "controller", func(ctx context.Context) error {
		return controller.Run(ctx, ctrlRec.config(), controller.Options{MetricsAddr: "0", HealthAddr: "0",
			LeaderElection: true, LeaseNamespace: namespace, Compat: controller.CompatSystems(), Restartable: true,
			Namespace: namespace, MemberSecret: memberSecret, StatusAddr: statusAddr})
	})
	stopSpeaker := testrun.Background(t, "speaker", func(ctx context.Context) error {
		return speaker.Run(ctx, spkRec.config(), speaker.Options{NodeName: node.Name, MetricsAddr: "0", HealthAddr: "0",
			Namespace: namespace, Netns: nodeNS.Do, Restartable: true})
	})

	key := client.ObjectKeyFromObject(svc)
	poll("the Service has an address and the speaker's Announced condition", func() bool {
		if err := env.Client.Get(ctx, key, svc); err != nil {
			return false
		}
		return len(svc.Status.LoadBalancer.Ingress) == 1 && svc.Status.LoadBalancer.Ingress[0].IP == "192.0.2.100" &&
			meta.IsStatusConditionTrue(svc.Status.Conditions, speaker.ConditionAnnounced)
	})
	poll("the IPPool's status counts the address", func() bool {
		var p v1.IPPool
		return env.Client.Get(ctx, client.ObjectKey{Name: "rbac"}, &p) == nil && p.Status.IPv4 != nil && p.Status.IPv4.Used == 1
	})
	peerStatus := func(name string) (v1.BGPSessionStatus, string) {
		var p v1.BGPPeer
		if env.Client.Get(ctx, client.ObjectKey{Name: name}, &p) != nil || len(p.Status.Nodes) != 1 {
			return v1.BGPSessionStatus{}, ""
		}
		return p.Status.Nodes[0], p.Status.Established
	}
	poll("the speaker configured the MD5 peer (it read the Secret) and the controller summed its status up", func() bool {
		s, established := peerStatus("rbac-md5")
		return s.Node == node.Name && s.Session != "" && s.Session != speaker.SessionNotConfigured && established == "0/1"
	})
	poll("the speaker refused the peer whose Secret is in another namespace", func() bool {
		s, _ := peerStatus("rbac-foreign-secret")
		return s.Session == speaker.SessionNotConfigured && strings.Contains(s.Message, "only in its own namespace")
	})
	// The speaker events a problem when it appears, not on every reconcile. A peer whose
	// Secret comes and goes (the BGPPeer itself unchanged) has the same problem again each
	// time the Secret goes: the same Event about the same revision of the BGPPeer, which
	// client-go sends as a series, patched.
	toggled := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "rbac-toggle"},
		Data: map[string][]byte{speaker.PasswordKey: []byte("md5 secret")}}
	create(&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "rbac-secret-comes-and-goes"}, Spec: v1.BGPPeerSpec{
		PeerAddress: "127.0.0.3", PeerPort: 1, PeerASN: 64512, LocalASN: 64513,
		PasswordSecretRef: &v1.SecretReference{Name: toggled.Name}}})
	n := 0
	poll("the speaker patched a repeated Event", func() bool {
		n++
		if n%2 == 1 {
			_ = env.Client.Create(ctx, toggled.DeepCopy())
		} else {
			_ = env.Client.Delete(ctx, toggled.DeepCopy())
		}
		return slices.ContainsFunc(spkRec.snapshot(), func(c call) bool {
			return c.verb == "patch" && c.group == "events.k8s.io" && c.resource == "events" && c.code < 300
		})
	})
	poll("the controller wrote the Valid condition of the L2Policy, the BGPAdvertisement and the BFDProfile", func() bool {
		var (
			l2  v1.L2Policy
			adv v1.BGPAdvertisement
			bfd v1.BFDProfile
		)
		return env.Client.Get(ctx, client.ObjectKey{Name: "rbac"}, &l2) == nil &&
			env.Client.Get(ctx, client.ObjectKey{Name: "rbac"}, &adv) == nil &&
			env.Client.Get(ctx, client.ObjectKey{Name: "rbac"}, &bfd) == nil &&
			meta.IsStatusConditionTrue(l2.Status.Conditions, controller.ConditionValid) &&
			meta.IsStatusConditionTrue(adv.Status.Conditions, controller.ConditionValid) &&
			meta.IsStatusConditionTrue(bfd.Status.Conditions, controller.ConditionValid)
	})
	poll("the controller created the heartbeat Secret (read by name, absent, then created)", func() bool {
		var sec corev1.Secret
		return env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: memberSecret}, &sec) == nil &&
			len(sec.Data[controller.MemberKey]) == 44
	})
	poll("the status page shows the Service and the peer's session, and has read the speakers' namespace", func() bool {
		resp, err := http.Get("http://" + statusAddr + "/status.json")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r status.Report
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&r) != nil {
			return false
		}
		// Nothing runs the speaker DaemonSet here: the page says it is missing, and lists
		// no pod (after listing them).
		return len(r.Services) == 1 && len(r.Peers) > 0 && len(r.Peers[0].Sessions) == 1 &&
			len(r.Speakers.Problems) == 1 && strings.HasPrefix(r.Speakers.Problems[0], "no DaemonSet ferrolb-speaker in namespace "+namespace)
	})
	lease := &coordinationv1.Lease{}
	poll("the controller holds its Lease", func() bool {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "ferrolb-controller"}, lease)
		return err == nil && lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != ""
	})
	stopController() // gives the Lease back: an update
	stopSpeaker()

	calls := map[string][]call{controllerSA: ctrlRec.snapshot(), speakerSA: spkRec.snapshot()}
	if refused := append(ctrlRec.forbidden(), spkRec.forbidden()...); len(refused) > 0 {
		t.Errorf("the API server refused requests the code makes; add them to the markers in internal/*/rbac.go:\n%s",
			strings.Join(refused, "\n"))
	}
	for _, g := range grants {
		if slices.ContainsFunc(calls[g.sa], g.uses) {
			continue
		}
		if why, ok := unexercised[g]; ok {
			t.Logf("granted, not exercised here: %s (%s)", g, why)
			continue
		}
		hint := "no request used it: remove it from the markers, or list it in unexercised with the reason it is needed"
		inOwnNS := slices.ContainsFunc(calls[g.sa], func(c call) bool {
			return g.namespace == "" && c.group == g.group && c.resource == g.resource && c.verb == g.verb && c.namespace == namespace
		})
		if inOwnNS {
			hint = "used only in " + namespace + ": grant it there, with namespace= in its marker (a Role)"
		}
		t.Errorf("%s: %s", g, hint)
	}
	if t.Failed() {
		for _, sa := range []string{controllerSA, speakerSA} {
			t.Logf("%s made %s", sa, summary(calls[sa]))
		}
	}
}

// summary lists the distinct calls, for a failure's log.
func summary(calls []call) string {
	var out []string
	for _, c := range calls {
		if s := c.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// TestServiceAccountAccess asks the API server what the ServiceAccounts may do where it
// matters most: the speaker reads Secrets in its own namespace only, and neither Endpoints
// nor Namespaces; the controller reads the heartbeat Secret alone, by name, and may create
// Secrets in its own namespace only; the controller touches Leases in its own namespace only (not
// kube-node-lease, where kubelets renew theirs); neither may rewrite a Service, only its
// status, the speaker by patch alone.
func TestServiceAccountAccess(t *testing.T) {
	setup(t)
	type attrs = authorizationv1.ResourceAttributes
	for _, tt := range []struct {
		sa   string
		attr attrs
		want bool
	}{
		{speakerSA, attrs{Verb: "list", Resource: "secrets", Namespace: namespace}, true},
		{speakerSA, attrs{Verb: "watch", Resource: "secrets", Namespace: namespace}, true},
		{speakerSA, attrs{Verb: "get", Resource: "secrets", Namespace: "kube-system"}, false},
		{speakerSA, attrs{Verb: "list", Resource: "secrets", Namespace: "kube-system"}, false},
		{speakerSA, attrs{Verb: "watch", Resource: "secrets", Namespace: "kube-system"}, false},
		{speakerSA, attrs{Verb: "list", Resource: "secrets"}, false}, // all namespaces
		{speakerSA, attrs{Verb: "get", Resource: "secrets", Namespace: "default"}, false},
		{speakerSA, attrs{Verb: "list", Resource: "endpoints"}, false},
		{speakerSA, attrs{Verb: "get", Resource: "namespaces"}, false},
		{speakerSA, attrs{Verb: "list", Resource: "namespaces"}, false},
		{speakerSA, attrs{Verb: "patch", Resource: "services", Subresource: "status", Namespace: "default"}, true},
		{speakerSA, attrs{Verb: "update", Resource: "services", Subresource: "status", Namespace: "default"}, false},
		{speakerSA, attrs{Verb: "update", Resource: "services", Namespace: "default"}, false},
		{speakerSA, attrs{Verb: "patch", Resource: "services", Namespace: "default"}, false},
		{speakerSA, attrs{Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Namespace: namespace}, false},
		{controllerSA, attrs{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: namespace}, true},
		{controllerSA, attrs{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: namespace}, true},
		{controllerSA, attrs{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-node-lease"}, false},
		{controllerSA, attrs{Verb: "patch", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-node-lease"}, false},
		{controllerSA, attrs{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-node-lease"}, false},
		{controllerSA, attrs{Verb: "delete", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-node-lease"}, false},
		{controllerSA, attrs{Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"}, false},
		{controllerSA, attrs{Verb: "delete", Group: "coordination.k8s.io", Resource: "leases", Namespace: namespace}, false},
		{controllerSA, attrs{Verb: "update", Resource: "services", Subresource: "status", Namespace: "default"}, true},
		{controllerSA, attrs{Verb: "update", Resource: "services", Namespace: "default"}, false},
		{controllerSA, attrs{Verb: "patch", Resource: "services", Namespace: "default"}, false},
		{controllerSA, attrs{Verb: "get", Resource: "secrets", Namespace: namespace}, false},
		// The heartbeat Secret: read by name and created, nothing else; no other Secret read.
		{controllerSA, attrs{Verb: "get", Resource: "secrets", Namespace: namespace, Name: memberSecret}, true},
		{controllerSA, attrs{Verb: "create", Resource: "secrets", Namespace: namespace}, true},
		{controllerSA, attrs{Verb: "get", Resource: "secrets", Namespace: namespace, Name: "rbac-md5"}, false},
		{controllerSA, attrs{Verb: "list", Resource: "secrets", Namespace: namespace}, false},
		{controllerSA, attrs{Verb: "watch", Resource: "secrets", Namespace: namespace}, false},
		{controllerSA, attrs{Verb: "update", Resource: "secrets", Namespace: namespace, Name: memberSecret}, false},
		{controllerSA, attrs{Verb: "patch", Resource: "secrets", Namespace: namespace, Name: memberSecret}, false},
		{controllerSA, attrs{Verb: "delete", Resource: "secrets", Namespace: namespace, Name: memberSecret}, false},
		{controllerSA, attrs{Verb: "get", Resource: "secrets", Namespace: "kube-system", Name: memberSecret}, false},
		{controllerSA, attrs{Verb: "create", Resource: "secrets", Namespace: "kube-system"}, false},
		{controllerSA, attrs{Verb: "list", Resource: "secrets"}, false},
		// The status page reads the speaker pods in its own namespace only.
		{controllerSA, attrs{Verb: "list", Resource: "pods", Namespace: namespace}, true},
		{controllerSA, attrs{Verb: "list", Resource: "pods"}, false},
		{controllerSA, attrs{Verb: "list", Resource: "pods", Namespace: "kube-system"}, false},
		{controllerSA, attrs{Verb: "get", Group: "apps", Resource: "daemonsets", Namespace: "kube-system"}, false},
	} {
		a := tt.attr
		name := fmt.Sprintf("%s %s %s", tt.sa, a.Verb, groupResource(a.Group, a.Resource))
		if a.Subresource != "" {
			name += "/" + a.Subresource
		}
		if a.Name != "" {
			name += " " + a.Name
		}
		if a.Namespace != "" {
			name += " in " + a.Namespace
		}
		t.Run(name, func(t *testing.T) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               user(tt.sa),
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
				ResourceAttributes: &a,
			}}
			if err := env.Client.Create(context.Background(), sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tt.want {
				t.Errorf("allowed = %t, want %t (%s)", sar.Status.Allowed, tt.want, sar.Status.Reason)
			}
		})
	}
}

// TestRequestCall pins the request-to-verb mapping the recorder relies on.
func TestRequestCall(t *testing.T) {
	for _, tt := range []struct {
		method, url string
		want        call
	}{
		{"GET", "/api/v1/nodes/n1", call{verb: "get", resource: "nodes"}},
		{"GET", "/api/v1/services?limit=500", call{verb: "list", resource: "services"}},
		{"GET", "/api/v1/namespaces/ferrolb-system/secrets?watch=true&sendInitialEvents=true",
			call{verb: "watch", resource: "secrets", namespace: "ferrolb-system", watchList: true}},
		{"GET", "/apis/ferrolb.io/v1alpha1/ippools?watch=1", call{verb: "watch", group: "ferrolb.io", resource: "ippools"}},
		{"PUT", "/api/v1/namespaces/demo/services/web/status", call{verb: "update", resource: "services/status", namespace: "demo"}},
		{"PATCH", "/apis/ferrolb.io/v1alpha1/bgppeers/p/status", call{verb: "patch", group: "ferrolb.io", resource: "bgppeers/status"}},
		{"POST", "/apis/events.k8s.io/v1/namespaces/default/events", call{verb: "create", group: "events.k8s.io", resource: "events", namespace: "default"}},
		{"DELETE", "/apis/coordination.k8s.io/v1/namespaces/x/leases/l", call{verb: "delete", group: "coordination.k8s.io", resource: "leases", namespace: "x"}},
		{"DELETE", "/apis/coordination.k8s.io/v1/namespaces/x/leases", call{verb: "deletecollection", group: "coordination.k8s.io", resource: "leases", namespace: "x"}},
		{"GET", "/api/v1/namespaces/kube-system", call{verb: "get", resource: "namespaces"}},
	} {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := requestCall(tt.method, u)
		if !ok || got != tt.want {
			t.Errorf("%s %s = %+v, %t; want %+v", tt.method, tt.url, got, ok, tt.want)
		}
	}
	for _, p := range []string{"/api", "/apis", "/apis/ferrolb.io/v1alpha1", "/version", "/openapi/v3"} {
		if c, ok := requestCall("GET", &url.URL{Path: p}); ok {
			t.Errorf("GET %s = %+v, want no call (discovery)", p, c)
		}
	}
}
