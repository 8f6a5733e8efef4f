package status

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed" // the page's template, style and script
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"sync"
	"time"
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed page.css
	pageCSS string
	//go:embed page.js
	pageJS string

	pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
		"age": func(r *Report, t time.Time) string { return r.Age(t) },
		"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	}).Parse(pageHTML))

	// The Content-Security-Policy allows the page's own style and script (by hash) and
	// requests to its own server, and nothing else: no external asset, no other script.
	contentSecurityPolicy = "default-src 'none'; style-src '" + hash(pageCSS) + "'; script-src '" + hash(pageJS) +
		"'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Page serves the status page, read-only:
//
//	GET /             the page: the same as ferrolb status, as HTML
//	GET /status.json  the Report (ferrolb status -o json); 503 with {"error": ...} when it
//	                  cannot be read
//	GET /fragment     the page's content alone, which the page's script swaps in when
//	                  status.json changes, so the page follows the cluster without a reload
//
// The page has no external asset: its style and script are inline, allowed by hash in its
// Content-Security-Policy. It shows nothing read from a Secret (a Report holds none).
type Page struct {
	src Source
	// maxAge is how long one reading serves every request, however many browsers poll.
	maxAge time.Duration

	mu     sync.Mutex
	report *Report
	err    error
	at     time.Time
}

// NewPage serves reports read from src, each reading reused for a second.
func NewPage(src Source) *Page {
	return &Page{src: src, maxAge: time.Second}
}

// read returns the current reading, reading again when the last is older than maxAge.
func (p *Page) read(ctx context.Context) (*Report, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at.IsZero() || time.Since(p.at) >= p.maxAge {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		p.report, p.err = p.src.Gather(rctx)
		cancel()
		p.at = time.Now()
	}
	return p.report, p.err
}

// pageData is what the template renders.
type pageData struct {
	R   *Report
	Err string
	CSS template.CSS
	JS  template.JS
}

func (p *Page) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the status page is read-only", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	switch req.URL.Path {
	case "/", "/index.html":
		p.html(w, req, "page")
	case "/fragment":
		p.html(w, req, "main")
	case "/status.json":
		r, err := p.read(req.Context())
		h.Set("Content-Type", "application/json")
		var body any = r
		code := http.StatusOK
		if err != nil {
			body, code = map[string]string{"error": err.Error()}, http.StatusServiceUnavailable
		}
		b, err := json.MarshalIndent(body, "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(code)
		_, _ = w.Write(append(b, '\n'))
	default:
		http.NotFound(w, req)
	}
}

func (p *Page) html(w http.ResponseWriter, req *http.Request, name string) {
	r, err := p.read(req.Context())
	d := pageData{R: r, CSS: template.CSS(pageCSS), JS: template.JS(pageJS)} //nolint:gosec // G203: constants of this package, not input
	if err != nil {
		d.Err = err.Error()
	}
	var b bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&b, name, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	_, _ = w.Write(b.Bytes())
}
