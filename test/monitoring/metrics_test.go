// Package monitoring checks the chart's monitoring pack (charts/ferrolb: the PrometheusRule
// of files/prometheus-rules.yaml and the Grafana dashboard of files/dashboard.json) against
// the metrics FerroLB exports, and the README's list of those metrics. It has test files
// only: the Prometheus module it uses to parse rules and queries is never linked into
// cmd/ferrolb (TestPrometheusNotInBinary).
package monitoring

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// root is the repository's root, from this package's directory.
const root = "../.."

// metric is a metric that a query may name: its labels, and where it is defined.
type metric struct {
	labels map[string]bool
	where  string
}

// exported finds the metrics FerroLB's code defines, from the source: every
// prometheus.NewDesc call and every metric options literal (GaugeOpts, CounterOpts, ...)
// given to a prometheus constructor, in the non-test Go files of cmd/ and internal/. Names
// and labels must be string constants the scan can read (literals, constants of the same
// package, or sums of them); anything else, and any options literal that does not go
// straight into a constructor, is an error rather than a metric silently missed.
//
// Why the source and not the collectors: the speaker's collectors are unexported and read a
// running speaker (its announcer, heartbeat tracker, BGP server, XDP maps), and the
// controller registers its metrics only inside controller.Run with an API server; describing
// them would need both roles running. The source holds every name either can export, and a
// renamed metric changes it. What it cannot see is a metric defined and never registered:
// TestExportedMetrics pins the scan to the list below so that one is noticed too.
func exported(t *testing.T) map[string]metric {
	t.Helper()
	byDir := map[string][]*ast.File{}
	fset := token.NewFileSet()
	for _, top := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			byDir[filepath.Dir(path)] = append(byDir[filepath.Dir(path)], f)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]metric{}
	var errs []string
	for _, files := range byDir {
		s := &scan{fset: fset, consts: packageConsts(files), out: out}
		for _, f := range files {
			s.file(f)
		}
		errs = append(errs, s.errs...)
	}
	if len(errs) > 0 {
		t.Fatalf("metric definitions the scan cannot read:\n%s", strings.Join(errs, "\n"))
	}
	return out
}

// scan reads the metric definitions of one package.
type scan struct {
	fset   *token.FileSet
	consts map[string]ast.Expr
	out    map[string]metric
	errs   []string
}

// constructors are the prometheus functions that take metric options first, and whether
// their second argument is the variable labels; the value is what the metric's series are
// named with (histograms and summaries add suffixes).
var constructors = map[string]struct {
	vec      bool
	suffixes []string
}{
	"NewGauge": {}, "NewCounter": {}, "NewUntypedFunc": {}, "NewGaugeFunc": {}, "NewCounterFunc": {},
	"NewGaugeVec": {vec: true}, "NewCounterVec": {vec: true},
	"NewHistogram":    {suffixes: []string{"_bucket", "_sum", "_count"}},
	"NewHistogramVec": {vec: true, suffixes: []string{"_bucket", "_sum", "_count"}},
	"NewSummary":      {suffixes: []string{"", "_sum", "_count"}},
	"NewSummaryVec":   {vec: true, suffixes: []string{"", "_sum", "_count"}},
}

var optsTypes = []string{"Opts", "GaugeOpts", "CounterOpts", "HistogramOpts", "SummaryOpts", "UntypedOpts"}

func (s *scan) file(f *ast.File) {
	prom := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == "github.com/prometheus/client_golang/prometheus" {
			prom = "prometheus"
			if imp.Name != nil {
				prom = imp.Name.Name
			}
		}
	}
	if prom == "" {
		return
	}
	isProm := func(e ast.Expr, names ...string) (string, bool) {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return "", false
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok || x.Name != prom || !slices.Contains(names, sel.Sel.Name) {
			return "", false
		}
		return sel.Sel.Name, true
	}
	consumed := map[ast.Expr]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if _, ok := isProm(call.Fun, "NewDesc"); ok && len(call.Args) == 4 {
			name := s.str(call.Args[0])
			s.add(name, nil, s.labels(call.Args[2]), s.constLabels(call.Args[3]), call.Pos())
			return true
		}
		fn, ok := isProm(call.Fun, slices.Collect(maps.Keys(constructors))...)
		if !ok || len(call.Args) == 0 {
			return true
		}
		c := constructors[fn]
		opts := call.Args[0]
		if u, ok := opts.(*ast.UnaryExpr); ok {
			opts = u.X
		}
		lit, ok := opts.(*ast.CompositeLit)
		if !ok {
			s.errf(call.Pos(), "%s.%s takes options that are not a literal", prom, fn)
			return true
		}
		consumed[lit] = true
		var ns, sub, name string
		var constLabels []string
		for _, el := range lit.Elts {
			kv, ok := el.(*ast.KeyValueExpr)
			if !ok {
				s.errf(el.Pos(), "metric options without field names")
				continue
			}
			switch kv.Key.(*ast.Ident).Name {
			case "Namespace":
				ns = s.str(kv.Value)
			case "Subsystem":
				sub = s.str(kv.Value)
			case "Name":
				name = s.str(kv.Value)
			case "ConstLabels":
				constLabels = s.constLabels(kv.Value)
			}
		}
		var labels []string
		if c.vec && len(call.Args) > 1 {
			labels = s.labels(call.Args[1])
		}
		var parts []string
		for _, p := range []string{ns, sub, name} {
			if p != "" {
				parts = append(parts, p)
			}
		}
		s.add(strings.Join(parts, "_"), c.suffixes, labels, constLabels, call.Pos())
		return true
	})
	// Options built anywhere else would be metrics the scan does not see.
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.CompositeLit); ok && !consumed[lit] {
			if _, ok := isProm(lit.Type, optsTypes...); ok {
				s.errf(lit.Pos(), "metric options not given straight to a prometheus constructor")
			}
		}
		return true
	})
}

func (s *scan) add(name string, suffixes, labels, constLabels []string, pos token.Pos) {
	if name == "" {
		s.errf(pos, "metric without a name the scan can read")
		return
	}
	m := metric{labels: map[string]bool{}, where: s.fset.Position(pos).String()}
	for _, l := range append(labels, constLabels...) {
		m.labels[l] = true
	}
	if len(suffixes) == 0 {
		suffixes = []string{""}
	}
	for _, suf := range suffixes {
		if prev, ok := s.out[name+suf]; ok {
			s.errf(pos, "metric %s defined twice (also at %s)", name+suf, prev.where)
		}
		s.out[name+suf] = m
	}
}

func (s *scan) errf(pos token.Pos, format string, args ...any) {
	s.errs = append(s.errs, s.fset.Position(pos).String()+": "+fmt.Sprintf(format, args...))
}

// str is the value of a string constant expression, or "" (with an error) when it is not one.
func (s *scan) str(e ast.Expr) string {
	v, ok := constString(e, s.consts, 0)
	if !ok {
		s.errf(e.Pos(), "not a string constant")
	}
	return v
}

// labels reads a []string{...} literal of constants, or nil.
func (s *scan) labels(e ast.Expr) []string {
	if id, ok := e.(*ast.Ident); ok && id.Name == "nil" {
		return nil
	}
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		s.errf(e.Pos(), "labels that are not a []string literal")
		return nil
	}
	var out []string
	for _, el := range lit.Elts {
		out = append(out, s.str(el))
	}
	return out
}

// constLabels reads the keys of a prometheus.Labels{...} literal, or nil.
func (s *scan) constLabels(e ast.Expr) []string {
	if id, ok := e.(*ast.Ident); ok && id.Name == "nil" {
		return nil
	}
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		s.errf(e.Pos(), "constant labels that are not a literal")
		return nil
	}
	var out []string
	for _, el := range lit.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			out = append(out, s.str(kv.Key))
		}
	}
	return out
}

// packageConsts maps a package's constant names to their expressions.
func packageConsts(files []*ast.File) map[string]ast.Expr {
	out := map[string]ast.Expr{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						out[n.Name] = vs.Values[i]
					}
				}
			}
		}
	}
	return out
}

func constString(e ast.Expr, consts map[string]ast.Expr, depth int) (string, bool) {
	if depth > 10 {
		return "", false
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		v, err := strconv.Unquote(e.Value)
		return v, err == nil
	case *ast.Ident:
		if c, ok := consts[e.Name]; ok {
			return constString(c, consts, depth+1)
		}
	case *ast.ParenExpr:
		return constString(e.X, consts, depth+1)
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			x, ok1 := constString(e.X, consts, depth+1)
			y, ok2 := constString(e.Y, consts, depth+1)
			return x + y, ok1 && ok2
		}
	}
	return "", false
}

// TestExportedMetrics checks the scan itself on metrics defined in each of the ways the code
// uses (prometheus.NewDesc with variable labels, a GaugeVec, a Gauge named by a constant
// with constant labels), and that every name follows FerroLB's prefix.
func TestExportedMetrics(t *testing.T) {
	got := exported(t)
	for name, want := range map[string][]string{
		"ferrolb_bgp_session_up":         {"bgppeer", "peer"}, // NewDesc, internal/speaker
		"ferrolb_datapath_packets_total": {"address", "backend", "port", "protocol", "service"},
		"ferrolb_speakers_alive":         nil,                                // NewDesc without labels
		"ferrolb_pool_used_addresses":    {"family", "pool"},                 // NewGaugeVec, internal/controller
		"ferrolb_config_invalid_objects": {"kind"},                           // NewDesc, internal/controller
		"ferrolb_build_info":             {"commit", "goversion", "version"}, // NewGauge named by a constant, ConstLabels
	} {
		m, ok := got[name]
		if !ok {
			t.Errorf("the scan did not find %s", name)
			continue
		}
		if gl := slices.Sorted(maps.Keys(m.labels)); !slices.Equal(gl, want) {
			t.Errorf("%s (%s): labels %v, want %v", name, m.where, gl, want)
		}
	}
	for name, m := range got {
		if !strings.HasPrefix(name, "ferrolb_") {
			t.Errorf("%s (%s) does not start with ferrolb_", name, m.where)
		}
	}
	if len(got) < 20 {
		t.Errorf("the scan found %d metrics, want FerroLB's 20 or more: %v", len(got), slices.Sorted(maps.Keys(got)))
	}
}

// TestREADMEMetrics: the README's metrics section names every metric FerroLB exports, and
// no ferrolb_ metric that it does not.
func TestREADMEMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Metrics\n")
	if start < 0 {
		t.Fatal("README.md has no ## Metrics section")
	}
	section := readme[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	got := exported(t)
	for name := range got {
		if !strings.Contains(section, "`"+name) {
			t.Errorf("the README's metrics section does not list %s", name)
		}
	}
	named := regexp.MustCompile(`\bferrolb_[a-z0-9_]+`).FindAllString(section, -1)
	slices.Sort(named)
	for _, name := range slices.Compact(named) {
		if _, ok := got[name]; !ok {
			t.Errorf("the README's metrics section names %s, which FerroLB does not export", name)
		}
	}
}
