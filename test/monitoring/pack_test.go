package monitoring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	rulesFile     = "charts/ferrolb/files/prometheus-rules.yaml"
	dashboardFile = "charts/ferrolb/files/dashboard.json"
	runbookBase   = "https://github.com/ferrolb/ferrolb/blob/main/docs/troubleshooting.md#"
)

// external are the metrics of other programs that the pack may name, with their labels. Each
// is named here on purpose, with where it comes from; FerroLB's own come from the code
// (exported).
var external = map[string]metric{
	// kube-state-metrics: the nodes the speaker's DaemonSet should run on.
	"kube_daemonset_status_desired_number_scheduled": {labels: set("namespace", "daemonset"), where: "kube-state-metrics"},
	// controller-runtime v0.25 (sigs.k8s.io/controller-runtime/pkg/metrics and
	// pkg/internal/controller/metrics), served by both roles.
	"controller_runtime_reconcile_errors_total": {labels: set("controller"), where: "controller-runtime"},
	"workqueue_depth":               {labels: set("name", "controller", "priority"), where: "controller-runtime"},
	"leader_election_master_status": {labels: set("name"), where: "controller-runtime"},
}

// targetLabels are the labels Prometheus adds to every series it scrapes through the
// chart's ServiceMonitors (prometheus-operator), which a query may use on any metric.
var targetLabels = set("job", "instance", "namespace", "pod", "service", "endpoint", "container")

func set(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

// known is every metric the pack may name.
func known(t *testing.T) map[string]metric {
	t.Helper()
	out := exported(t)
	for name, m := range external {
		if prev, ok := out[name]; ok {
			t.Fatalf("%s is both FerroLB's (%s) and listed as %s's", name, prev.where, m.where)
		}
		out[name] = m
	}
	return out
}

// checkQuery parses a PromQL expression and returns what is wrong with it: a parse error, a
// metric that is not in metrics, a selector without a metric name, or a label that the
// metrics it applies to do not have (in a matcher, by/without, or on/ignoring).
func checkQuery(q string, metrics map[string]metric) []error {
	expr, err := parser.ParseExpr(q)
	if err != nil {
		return []error{err}
	}
	var errs []error
	// labelsOf is the labels any series of n may have.
	labelsOf := func(n parser.Node) map[string]bool {
		out := maps.Clone(targetLabels)
		parser.Inspect(n, func(c parser.Node, _ []parser.Node) error {
			if vs, ok := c.(*parser.VectorSelector); ok {
				maps.Copy(out, metrics[vs.Name].labels)
			}
			return nil
		})
		return out
	}
	checkLabels := func(what string, names []string, have map[string]bool) {
		for _, l := range names {
			if !have[l] {
				errs = append(errs, fmt.Errorf("%s: label %q is on none of the series it applies to", what, l))
			}
		}
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			if n.Name == "" {
				errs = append(errs, fmt.Errorf("%s: a selector without a metric name", n))
				return nil
			}
			m, ok := metrics[n.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: FerroLB exports no metric %s", n, n.Name))
				return nil
			}
			for _, lm := range n.LabelMatchers {
				if lm.Name != model.MetricNameLabel && !m.labels[lm.Name] && !targetLabels[lm.Name] {
					errs = append(errs, fmt.Errorf("%s: %s has no label %q", n, n.Name, lm.Name))
				}
			}
		case *parser.AggregateExpr:
			checkLabels(n.String(), n.Grouping, labelsOf(n.Expr))
		case *parser.BinaryExpr:
			if n.VectorMatching != nil && len(n.VectorMatching.MatchingLabels) > 0 {
				both := labelsOf(n.LHS)
				maps.Copy(both, labelsOf(n.RHS))
				checkLabels(n.String(), n.VectorMatching.MatchingLabels, both)
			}
		}
		return nil
	})
	return errs
}

// helmTemplate renders the chart with these --set values and returns its documents. helm
// comes from hack/envtest.sh (cached outside the clone; CI builds it first).
func helmTemplate(t *testing.T, sets ...string) []map[string]any {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(root, "hack/envtest.sh"))
	cmd.Env = append(os.Environ(), "WITH_HELM=1")
	dir, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w\n%s", err, ee.Stderr)
		}
		t.Fatalf("hack/envtest.sh (WITH_HELM=1): %v", err)
	}
	args := []string{"template", "t", filepath.Join(root, "charts/ferrolb"), "--namespace", "ferrolb-system"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	var stderr bytes.Buffer
	cmd = exec.Command(filepath.Join(strings.TrimSpace(string(dir)), "helm"), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var docs []map[string]any
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		b, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := sigsyaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("a rendered document: %v\n%s", err, b)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

func find(docs []map[string]any, kind string) []map[string]any {
	var out []map[string]any
	for _, d := range docs {
		if d["kind"] == kind {
			out = append(out, d)
		}
	}
	return out
}

// TestPrometheusRule: with metrics.prometheusRule.enabled the chart renders one
// PrometheusRule whose spec is files/prometheus-rules.yaml; the file passes Prometheus' own
// rule validation (rulefmt, as promtool check rules: unknown fields, durations, label names,
// annotation templates, each expression parsed); every expression names only metrics FerroLB
// exports (or the external ones listed) with labels they have; and every alert has a
// severity, a summary, a description and a runbook_url into docs/troubleshooting.md.
func TestPrometheusRule(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, rulesFile))
	if err != nil {
		t.Fatal(err)
	}
	rules := find(helmTemplate(t, "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps"), "PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules rendered, want 1", len(rules))
	}
	pr := rules[0]
	if l, _ := pr["metadata"].(map[string]any)["labels"].(map[string]any); l["release"] != "kps" {
		t.Errorf("PrometheusRule labels %v lack metrics.prometheusRule.labels (release: kps)", l)
	}
	var fromFile map[string]any
	if err := sigsyaml.Unmarshal(raw, &fromFile); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pr["spec"], fromFile) {
		t.Errorf("the PrometheusRule's spec is not %s", rulesFile)
	}

	groups, errs := rulefmt.Parse(raw, false, model.UTF8Validation)
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if groups == nil {
		t.FailNow()
	}
	metrics := known(t)
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			for _, err := range checkQuery(r.Expr, metrics) {
				t.Errorf("%s: %v", name, err)
			}
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", name, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s has no %s", name, a)
				}
			}
			if u := r.Annotations["runbook_url"]; !strings.HasPrefix(u, runbookBase) || len(u) == len(runbookBase) {
				t.Errorf("%s: runbook_url %q is not an anchor of %s", name, u, runbookBase)
			}
		}
	}
	// The pack's alerts (issue 19): a rename here is a change for whoever routes them.
	want := []string{"FerroLBPoolNearlyExhausted", "FerroLBServicesPending", "FerroLBConfigurationInvalid", "FerroLBSpeakerConfigurationProblem",
		"FerroLBBGPSessionDown", "FerroLBBFDFlapping", "FerroLBSpeakerMissesPeers", "FerroLBSpeakersFewerThanNodes"}
	if got := slices.Sorted(maps.Keys(alerts)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("alerts %v, want %v", got, want)
	}
}

// TestRunbookAnchors: once docs/troubleshooting.md exists, every runbook_url's anchor is one
// of its headings (GitHub's anchors: lower case, spaces to dashes, punctuation dropped).
func TestRunbookAnchors(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root, "docs/troubleshooting.md"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no docs/troubleshooting.md yet: the alerts' runbook anchors are not checked")
	}
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	punct := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	for line := range strings.Lines(string(doc)) {
		if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
			a := strings.ReplaceAll(punct.ReplaceAllString(strings.ToLower(strings.TrimSpace(h)), ""), " ", "-")
			anchors[a] = true
		}
	}
	raw, err := os.ReadFile(filepath.Join(root, rulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert       string
				Annotations map[string]string
			}
		}
	}
	if err := sigsyaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if a, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookBase); ok && !anchors[a] {
				t.Errorf("%s: docs/troubleshooting.md has no heading for #%s", r.Alert, a)
			}
		}
	}
}

// grafanaVars are Grafana's variables in the dashboard's queries, replaced by what PromQL
// can parse: intervals by a duration, template variables (inside label values) by a regex.
var (
	grafanaInterval = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)
	grafanaVar      = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	labelValues     = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)
)

func promQL(q string) string {
	return grafanaVar.ReplaceAllString(grafanaInterval.ReplaceAllString(q, "5m"), ".*")
}

// dashboardQueries returns every query of a dashboard: each target's expr, each template
// variable's query; where names the panel or variable.
func dashboardQueries(t *testing.T, dash map[string]any) (queries []struct{ where, q string }) {
	t.Helper()
	add := func(where, q string) { queries = append(queries, struct{ where, q string }{where, q}) }
	var panels func(ps []any)
	panels = func(ps []any) {
		for _, p := range ps {
			p := p.(map[string]any)
			targets, _ := p["targets"].([]any)
			for _, tg := range targets {
				if expr, ok := tg.(map[string]any)["expr"].(string); ok {
					add(fmt.Sprintf("panel %q", p["title"]), expr)
				}
			}
			if sub, ok := p["panels"].([]any); ok {
				panels(sub)
			}
		}
	}
	ps, _ := dash["panels"].([]any)
	panels(ps)
	tmpl, _ := dash["templating"].(map[string]any)
	vars, _ := tmpl["list"].([]any)
	for _, v := range vars {
		v := v.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		q, _ := v["definition"].(string)
		if qm, ok := v["query"].(map[string]any); ok {
			q, _ = qm["query"].(string)
		}
		add(fmt.Sprintf("variable %q", v["name"]), q)
	}
	return queries
}

// checkDashboardQuery checks one query of the dashboard, as checkQuery does; a template
// variable's label_values(selector, label) checks the selector and the label.
func checkDashboardQuery(q string, metrics map[string]metric) []error {
	if m := labelValues.FindStringSubmatch(q); m != nil {
		errs := checkQuery(promQL(m[1]), metrics)
		if expr, err := parser.ParseExpr(promQL(m[1])); err == nil {
			if vs, ok := expr.(*parser.VectorSelector); ok {
				if _, ok := metrics[vs.Name]; ok && !metrics[vs.Name].labels[m[2]] && !targetLabels[m[2]] {
					errs = append(errs, fmt.Errorf("label_values: %s has no label %q", vs.Name, m[2]))
				}
			}
		}
		return errs
	}
	return checkQuery(promQL(q), metrics)
}

// TestDashboard: with metrics.grafanaDashboard.enabled the chart renders a ConfigMap
// labelled for Grafana's sidecar holding files/dashboard.json; the dashboard is JSON with a
// uid and a Prometheus data source variable, its panels have distinct ids, and every query
// (each panel target's expr and each template variable's) parses and names only metrics
// FerroLB exports (or the external ones listed) with labels they have.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var cm map[string]any
	for _, d := range find(helmTemplate(t, "metrics.grafanaDashboard.enabled=true"), "ConfigMap") {
		if d["metadata"].(map[string]any)["name"] == "ferrolb-dashboard" {
			cm = d
		}
	}
	if cm == nil {
		t.Fatal("no ConfigMap ferrolb-dashboard rendered")
	}
	if l, _ := cm["metadata"].(map[string]any)["labels"].(map[string]any); l["grafana_dashboard"] != "1" {
		t.Errorf("ConfigMap labels %v lack grafana_dashboard: \"1\"", l)
	}
	if got, _ := cm["data"].(map[string]any)["ferrolb.json"].(string); strings.TrimSpace(got) != strings.TrimSpace(string(raw)) {
		t.Errorf("the ConfigMap's ferrolb.json is not %s", dashboardFile)
	}

	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash["uid"] != "ferrolb" || dash["title"] == "" {
		t.Errorf("uid %v, title %v: want uid ferrolb and a title", dash["uid"], dash["title"])
	}
	ids := map[float64]bool{}
	var walk func(ps []any)
	walk = func(ps []any) {
		for _, p := range ps {
			p := p.(map[string]any)
			id, _ := p["id"].(float64)
			if ids[id] {
				t.Errorf("panel %q: id %v used twice", p["title"], id)
			}
			ids[id] = true
			if ds, ok := p["datasource"].(map[string]any); ok && ds["uid"] != "${datasource}" {
				t.Errorf("panel %q: data source %v, want the ${datasource} variable", p["title"], ds)
			}
			if sub, ok := p["panels"].([]any); ok {
				walk(sub)
			}
		}
	}
	ps, _ := dash["panels"].([]any)
	walk(ps)

	metrics := known(t)
	queries := dashboardQueries(t, dash)
	if len(queries) < 10 {
		t.Fatalf("%d queries in the dashboard: the walk over its panels is broken", len(queries))
	}
	for _, q := range queries {
		for _, err := range checkDashboardQuery(q.q, metrics) {
			t.Errorf("%s: %v", q.where, err)
		}
	}
}

// TestQueryCheck shows the checks above fail on what they are for: a metric FerroLB does not
// export (here the name before the pool metrics were split), a label a metric does not have,
// in a matcher or a grouping, and a query that does not parse, in a rule and in the
// dashboard.
func TestQueryCheck(t *testing.T) {
	metrics := known(t)
	for _, c := range []struct {
		q    string
		want string // in the error; "" for none
	}{
		{`max by (pool, family) (ferrolb_pool_used_addresses) / max by (pool, family) (ferrolb_pool_capacity_addresses) > 0.9`, ""},
		{`max by (pool, family) (ferrolb_pool_addresses{state="used"}) > 0.9`, "FerroLB exports no metric ferrolb_pool_addresses"},
		{`ferrolb_bgp_session_up{bgp_peer="r1"} == 0`, `has no label "bgp_peer"`},
		{`sum by (node) (ferrolb_speakers_alive)`, `label "node" is on none`},
		{`ferrolb_speakers_alive < on (node) group_left () count(ferrolb_speakers_alive)`, `label "node" is on none`},
		{`{job="ferrolb"}`, "without a metric name"},
		{`rate(ferrolb_allocations_total[5m]`, "unclosed"},
		{`sum by (instance) (rate(ferrolb_l2_takeovers_total{instance=~"$speaker"}[$__rate_interval]))`, ""},
		{`rate(ferrolb_l2_takeover_total{instance=~"$speaker"}[$__rate_interval])`, "no metric ferrolb_l2_takeover_total"},
		{`label_values(ferrolb_speakers_alive, instance)`, ""},
		{`label_values(ferrolb_pool_capacity_addresses, state)`, `has no label "state"`},
	} {
		errs := checkDashboardQuery(c.q, metrics)
		switch {
		case c.want == "" && len(errs) > 0:
			t.Errorf("%s: %v, want no error", c.q, errs)
		case c.want != "" && !strings.Contains(fmt.Sprint(errs), c.want):
			t.Errorf("%s: %v, want an error containing %q", c.q, errs, c.want)
		}
	}
}

// TestDefaultRender: both switches are off by default, so the default install (and
// deploy/ferrolb.yaml) needs neither prometheus-operator's CRDs nor Grafana.
func TestDefaultRender(t *testing.T) {
	docs := helmTemplate(t)
	if n := len(find(docs, "PrometheusRule")); n != 0 {
		t.Errorf("%d PrometheusRules in the default render", n)
	}
	for _, cm := range find(docs, "ConfigMap") {
		t.Errorf("ConfigMap %v in the default render", cm["metadata"].(map[string]any)["name"])
	}
}

// TestPrometheusNotInBinary: the Prometheus server module these tests parse with is not
// linked into the ferrolb binary.
func TestPrometheusNotInBinary(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./cmd/ferrolb")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/ferrolb: %v", err)
	}
	for p := range strings.Lines(string(out)) {
		if strings.HasPrefix(p, "github.com/prometheus/prometheus/") {
			t.Errorf("cmd/ferrolb links %s", strings.TrimSpace(p))
		}
	}
}
