package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/kubetest"
	"github.com/ferrolb/ferrolb/internal/status"
)

var (
	env    *kubetest.Env
	update = flag.Bool("update", false, "rewrite testdata/ with what the report renders now")
)

func TestMain(m *testing.M) {
	os.Exit(kubetest.Run(m, &env))
}

// The fixtures' clock: conditions changed at t0, the report is read five minutes later, so
// every age it prints is fixed.
var (
	t0  = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(5 * time.Minute)
)

const (
	demoNS = "status-demo"
	// secretPassword is in a Secret a BGPPeer refers to: no output may show it, nor the
	// Secret's name.
	secretPassword = "md5-Pa55word-never-shown"
	secretName     = "router-md5-secret-name"
)

var fixturesOnce sync.Once

// fixtures creates, once, what a cluster running FerroLB holds: pools in each state (one
// conflicting, one invalid), Services announced by layer 2 and by BGP and one pending (plus
// two FerroLB does not serve), BGPPeers with the speakers' session status, and the speaker
// DaemonSet with a pod that crashes. Every status is written as the controller and the
// speakers write it.
func fixtures(t *testing.T) {
	t.Helper()
	fixturesOnce.Do(func() { createFixtures(t) })
	if t.Failed() {
		t.FailNow()
	}
}

func createFixtures(t *testing.T) {
	ctx := context.Background()
	c := env.Client
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	cond := func(typ string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(t0)}
	}
	for _, ns := range []string{demoNS, status.DefaultNamespace} {
		must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}

	// Pools, with the status the controller writes.
	count := func(total, used int64) *v1.AddressCount {
		return &v1.AddressCount{Total: itoa(total), Used: used, Free: itoa(total - used)}
	}
	ready := cond("Ready", metav1.ConditionTrue, "Ready", "the pool hands out addresses")
	noOverlap := cond("Conflict", metav1.ConditionFalse, "NoOverlap", "the pool overlaps no other pool")
	broken := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "broken"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{
		{Start: "2001:db8:9::20", Stop: "2001:db8:9::10"}}}}
	_, parseErr := config.ParsePool(broken)
	if parseErr == nil {
		t.Fatal("the broken pool parses")
	}
	pools := []struct {
		pool   *v1.IPPool
		status v1.IPPoolStatus
	}{
		{&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lab-l2"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{
			{Start: "192.0.2.200", Stop: "192.0.2.220"}}}},
			v1.IPPoolStatus{Conditions: []metav1.Condition{ready, cond("Conflict", metav1.ConditionTrue, "Overlap",
				"overlaps pool overlap: the overlapping addresses are handed out by neither")}, IPv4: count(16, 1)}},
		{&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lab-bgp"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{
			{Start: "198.51.100.10", Stop: "198.51.100.30"}, {Start: "2001:db8:100::10", Stop: "2001:db8:100::30"}}}},
			v1.IPPoolStatus{Conditions: []metav1.Condition{ready, noOverlap}, IPv4: count(21, 1), IPv6: count(33, 1)}},
		{&v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "overlap"}, Spec: v1.IPPoolSpec{Blocks: []v1.IPBlock{{CIDR: "192.0.2.216/29"}}}},
			v1.IPPoolStatus{Conditions: []metav1.Condition{ready, cond("Conflict", metav1.ConditionTrue, "Overlap",
				"overlaps pool lab-l2: the overlapping addresses are handed out by neither")}, IPv4: count(3, 0)}},
		{broken, v1.IPPoolStatus{Conditions: []metav1.Condition{cond("Ready", metav1.ConditionFalse, "Invalid", parseErr.Error()), noOverlap}}},
	}
	for _, p := range pools {
		must(c.Create(ctx, p.pool))
		p.pool.Status = p.status
		must(c.Status().Update(ctx, p.pool))
	}

	// Services, with the controller's Allocated condition and the speakers' Announced and
	// Advertised.
	svc := func(name string, mutate func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: demoNS, Name: name}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	ingress := func(ips ...string) corev1.LoadBalancerStatus {
		var out corev1.LoadBalancerStatus
		for _, ip := range ips {
			out.Ingress = append(out.Ingress, corev1.LoadBalancerIngress{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)})
		}
		return out
	}
	services := []struct {
		svc    *corev1.Service
		status corev1.ServiceStatus
	}{
		{svc("web-l2", nil), corev1.ServiceStatus{LoadBalancer: ingress("192.0.2.200"), Conditions: []metav1.Condition{
			cond(status.ConditionAllocated, metav1.ConditionTrue, "Allocated", "192.0.2.200 from pool lab-l2"),
			cond(config.ConditionAnnounced, metav1.ConditionTrue, "Layer2", "announced: 192.0.2.200 by node-c (layer 2 on eth0)"),
		}}},
		{svc("web-bgp", func(s *corev1.Service) { s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack) }),
			corev1.ServiceStatus{LoadBalancer: ingress("198.51.100.10", "2001:db8:100::10"), Conditions: []metav1.Condition{
				cond(status.ConditionAllocated, metav1.ConditionTrue, "Allocated", "198.51.100.10 from pool lab-bgp, 2001:db8:100::10 from pool lab-bgp"),
				cond(status.ConditionAdvertised, metav1.ConditionTrue, "Advertised",
					"advertised: 198.51.100.10 by node-a to router-v4 (Established); 2001:db8:100::10 by node-a, node-b to router-v6 (Established)"),
				cond(config.ConditionAnnounced, metav1.ConditionFalse, "NoPolicy",
					"no L2Policy selects this Service (it may still be advertised by BGP)"),
			}}},
		{svc("waiting", func(s *corev1.Service) {
			s.Annotations = map[string]string{config.AnnotationPool: "lab-l2"}
		}), corev1.ServiceStatus{Conditions: []metav1.Condition{
			cond(status.ConditionAllocated, metav1.ConditionFalse, "NoAddress", "refused IPv4: no free IPv4 address in pool lab-l2"),
		}}},
		// Not FerroLB's: another class, and not a LoadBalancer.
		{svc("other-class", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") }), corev1.ServiceStatus{}},
		{svc("cluster-ip", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), corev1.ServiceStatus{}},
	}
	for _, s := range services {
		must(c.Create(ctx, s.svc))
		if len(s.status.Conditions) > 0 {
			s.svc.Status = s.status
			must(c.Status().Update(ctx, s.svc))
		}
	}

	// BGP peers and the sessions the speakers report; one peer's MD5 password is in a Secret.
	must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: status.DefaultNamespace, Name: secretName},
		StringData: map[string]string{"password": secretPassword}}))
	peers := []struct {
		peer   *v1.BGPPeer
		status v1.BGPPeerStatus
	}{
		{&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-v4"}, Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.1",
			PeerASN: 64512, LocalASN: 64513, BFDProfile: "fast", PasswordSecretRef: &v1.SecretReference{Name: secretName}}},
			v1.BGPPeerStatus{Established: "1/2", Nodes: []v1.BGPSessionStatus{
				{Node: "node-b", Session: "Active", BFD: "Down", LastTransitionTime: metav1.NewTime(t0.Add(4 * time.Minute))},
				{Node: "node-a", Session: "Established", BFD: "Up", Advertised: 1, LastTransitionTime: metav1.NewTime(t0)},
			}}},
		{&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-v6"}, Spec: v1.BGPPeerSpec{PeerAddress: "2001:db8::1",
			PeerASN: 64512, LocalASN: 64513}},
			v1.BGPPeerStatus{Established: "2/2", Nodes: []v1.BGPSessionStatus{
				{Node: "node-a", Session: "Established", Advertised: 1, LastTransitionTime: metav1.NewTime(t0.Add(-2 * time.Hour))},
				{Node: "node-b", Session: "Established", Advertised: 1, LastTransitionTime: metav1.NewTime(t0.Add(-2 * time.Hour))},
			}}},
		{&v1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "spare"}, Spec: v1.BGPPeerSpec{PeerAddress: "192.0.2.2",
			PeerASN: 64512, LocalASN: 64513}}, v1.BGPPeerStatus{}},
	}
	for _, p := range peers {
		must(c.Create(ctx, p.peer))
		if len(p.status.Nodes) > 0 {
			p.peer.Status = p.status
			must(c.Status().Update(ctx, p.peer))
		}
	}

	// The speaker DaemonSet: three nodes, one pod crashing.
	labels := map[string]string{"app.kubernetes.io/name": "ferrolb", "app.kubernetes.io/component": "speaker"}
	podSpec := corev1.PodSpec{Containers: []corev1.Container{{Name: "speaker", Image: "ghcr.io/ferrolb/ferrolb:dev"}}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: status.DefaultNamespace, Name: status.DaemonSetName},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec}}}
	must(c.Create(ctx, ds))
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, NumberAvailable: 2}
	must(c.Status().Update(ctx, ds))
	for _, n := range []struct {
		node, pod string
		ready     bool
	}{{"node-a", "ferrolb-speaker-7xk2p", true}, {"node-b", "ferrolb-speaker-9dfq4", true}, {"node-c", "ferrolb-speaker-m4wzt", false}} {
		spec := *podSpec.DeepCopy()
		spec.NodeName = n.node
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: status.DefaultNamespace, Name: n.pod, Labels: labels}, Spec: spec}
		must(c.Create(ctx, pod))
		cs := corev1.ContainerStatus{Name: "speaker", Image: "ghcr.io/ferrolb/ferrolb:dev", Ready: n.ready}
		readyCond := corev1.ConditionTrue
		if n.ready {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}
		} else {
			readyCond = corev1.ConditionFalse
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off restarting failed container"}
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{cs},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: readyCond, LastTransitionTime: metav1.NewTime(t0)}}}
		must(c.Status().Update(ctx, pod))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// source reads the fixtures as ferrolb status does (straight from the API server), with the
// fixtures' clock.
func source(t *testing.T, cfg *rest.Config) status.Source {
	t.Helper()
	src, err := status.ForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src.Now = func() time.Time { return now }
	return src
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, d)
	}
}

// TestText: the text screen shows each pool with its use, its conflict or why it is invalid;
// each Service FerroLB serves (and no other) with its addresses and pools, its layer 2
// announcer, its BGP advertisement and why one is pending; each BGP session with BFD; and the
// speakers, naming the pod that is not ready. testdata/status.txt is the whole screen; the
// README shows it.
func TestText(t *testing.T) {
	fixtures(t)
	r, err := source(t, env.Config).Gather(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := status.Write(&b, r, status.FormatText); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("ferrolb status:\n%s", out)
	for _, want := range []string{
		"4 pools, 3 Services (1 pending), 3 BGP peers (3/4 sessions established), speakers 2/3 ready",
		"lab-l2   Ready    1/15            -               conflict: overlaps pool overlap",
		"lab-bgp  Ready    1/20            1/32",
		"conflict: overlaps pool lab-l2",
		"broken   Invalid", "spec.blocks[0]",
		"status-demo/web-l2  192.0.2.200 (pool lab-l2)",
		"layer 2  announced: 192.0.2.200 by node-c (layer 2 on eth0)",
		"status-demo/web-bgp  198.51.100.10 (pool lab-bgp), 2001:db8:100::10 (pool lab-bgp)",
		"BGP      advertised: 198.51.100.10 by node-a to router-v4 (Established)",
		"layer 2  NoPolicy: no L2Policy selects this Service",
		"status-demo/waiting  (no address)",
		"pending  NoAddress: refused IPv4: no free IPv4 address in pool lab-l2",
		"router-v4  192.0.2.1    node-a  Established  Up", "router-v4  192.0.2.1    node-b  Active       Down",
		"router-v6  2001:db8::1  node-a  Established  off",
		"spare      192.0.2.2    -", "no node reports a session",
		"SPEAKERS (DaemonSet ferrolb-system/ferrolb-speaker): 2/3 ready",
		"not ready: ferrolb-speaker-m4wzt on node-c (CrashLoopBackOff)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the text lacks %q", want)
		}
	}
	for _, never := range []string{"other-class", "cluster-ip", secretPassword, secretName} {
		if strings.Contains(out, never) {
			t.Errorf("the text shows %q", never)
		}
	}
	golden(t, "status.txt", b.Bytes())
}

// TestJSONAndYAML: -o json is the Report, its field names pinned by testdata/status.json (the
// stable interface scripts rely on); -o yaml is the same document.
func TestJSONAndYAML(t *testing.T) {
	fixtures(t)
	r, err := source(t, env.Config).Gather(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var js, ys bytes.Buffer
	if err := status.Write(&js, r, status.FormatJSON); err != nil {
		t.Fatal(err)
	}
	if err := status.Write(&ys, r, status.FormatYAML); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.json", js.Bytes())

	var fromJSON, fromYAML status.Report
	if err := json.Unmarshal(js.Bytes(), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(ys.Bytes(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, &fromJSON); d != "" {
		t.Errorf("the JSON does not read back as the report (-report +json):\n%s", d)
	}
	if d := cmp.Diff(r, &fromYAML); d != "" {
		t.Errorf("the YAML does not read back as the report (-report +yaml):\n%s", d)
	}
	if fromJSON.Format != status.Format {
		t.Errorf("format = %q, want %q", fromJSON.Format, status.Format)
	}
	for _, want := range []string{
		"format: ferrolb.io/status/v1", "- ip: 192.0.2.200\n    pool: lab-l2", "reason: NoAddress",
		"state: Established", "bfd: Down", "reason: CrashLoopBackOff", "conflict: 'overlaps pool lab-l2: the overlapping addresses are handed out by neither'",
	} {
		if !strings.Contains(ys.String(), want) {
			t.Errorf("the YAML lacks %q", want)
		}
	}
	for _, never := range []string{secretPassword, secretName, "other-class"} {
		if strings.Contains(js.String(), never) || strings.Contains(ys.String(), never) {
			t.Errorf("the JSON or YAML shows %q", never)
		}
	}
}

// TestREADME: the README's "Seeing what FerroLB does" shows the text screen as it is
// (testdata/status.txt).
func TestREADME(t *testing.T) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	screen, err := os.ReadFile(filepath.Join("testdata", "status.txt"))
	if err != nil {
		t.Fatal(err)
	}
	block := "```\n$ ferrolb status\n" + string(screen) + "```\n"
	if !strings.Contains(string(readme), block) {
		t.Errorf("README.md does not show testdata/status.txt as it is; put this in its section \"Seeing what FerroLB does\":\n%s", block)
	}
}

// TestCRDsMissing: on a cluster without FerroLB's CRDs, the error says so.
func TestCRDsMissing(t *testing.T) {
	bare, err := kubetest.StartWithoutCRDs()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := bare.Stop(); err != nil {
			t.Error(err)
		}
	}()
	_, err = source(t, bare.Config).Gather(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "the ferrolb.io CRDs are not installed: ") || !strings.Contains(err.Error(), "does not serve ippools.ferrolb.io/v1alpha1") {
		t.Fatalf("Gather = %v, want an error saying the ferrolb.io CRDs are not installed", err)
	}
	t.Log(err)
}

// TestUnreachable: an API server that does not answer is named.
func TestUnreachable(t *testing.T) {
	cfg := rest.CopyConfig(env.Config)
	cfg.Host = "https://127.0.0.1:1"
	_, err := source(t, cfg).Gather(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach the API server at https://127.0.0.1:1: ") {
		t.Fatalf("Gather = %v, want an error saying the API server cannot be reached", err)
	}
	t.Log(err)
}

// asUser is the administrator's config impersonating user, bound to a ClusterRole with
// rules (and a Role in ferrolb-system with nsRules).
func asUser(t *testing.T, user string, rules, nsRules []rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := context.Background()
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	objs := []client.Object{
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: rules},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user}, Subjects: subjects,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user}},
	}
	if nsRules != nil {
		objs = append(objs,
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: status.DefaultNamespace, Name: user}, Rules: nsRules},
			&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: status.DefaultNamespace, Name: user}, Subjects: subjects,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user}})
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	return cfg
}

// readAll is what ferrolb status reads cluster-wide.
var readAll = []rbacv1.PolicyRule{
	{APIGroups: []string{"ferrolb.io"}, Resources: []string{"ippools", "bgppeers"}, Verbs: []string{"list"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list"}},
}

// TestForbidden: a user who may not list IPPools is told which resource and verb RBAC
// refuses; one who may read everything but the speakers gets the report, which says what it
// could not read of them; one with the permissions the README lists sees it all.
func TestForbidden(t *testing.T) {
	fixtures(t)
	ctx := context.Background()

	cfg := asUser(t, "status-no-pools", []rbacv1.PolicyRule{readAll[1]}, nil)
	_, err := source(t, cfg).Gather(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "not allowed to list ippools.ferrolb.io cluster-wide (RBAC): ") ||
		!strings.Contains(err.Error(), `User "status-no-pools" cannot list resource "ippools"`) {
		t.Errorf("Gather as a user who may not list IPPools = %v, want the resource and verb named", err)
	}
	t.Log(err)

	cfg = asUser(t, "status-no-speakers", readAll, nil)
	r, err := source(t, cfg).Gather(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Services) != 3 || r.Speakers.Desired != nil || len(r.Speakers.Pods) != 0 {
		t.Errorf("report as a user who may not read the speakers: %d Services, speakers %+v", len(r.Services), r.Speakers)
	}
	var b bytes.Buffer
	if err := status.WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"speakers unknown",
		"could not read: DaemonSet: not allowed to get daemonsets.apps in namespace ferrolb-system (RBAC): ",
		"could not read: pods: not allowed to list pods in namespace ferrolb-system (RBAC): ",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the text lacks %q:\n%s", want, b.String())
		}
	}

	cfg = asUser(t, "status-viewer", readAll, []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
	})
	if r, err = source(t, cfg).Gather(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.Speakers.Problems) != 0 || len(r.Speakers.Pods) != 3 {
		t.Errorf("report with the permissions the README lists: speakers %+v", r.Speakers)
	}
}

// TestNamespaceWithoutSpeakers: --namespace naming a namespace without the DaemonSet is said.
func TestNamespaceWithoutSpeakers(t *testing.T) {
	fixtures(t)
	src := source(t, env.Config)
	src.Namespace = "default"
	r, err := src.Gather(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := "no DaemonSet ferrolb-speaker in namespace default"; len(r.Speakers.Problems) == 0 || !strings.HasPrefix(r.Speakers.Problems[0], want) {
		t.Errorf("speakers %+v, want a problem starting %q", r.Speakers, want)
	}
}
