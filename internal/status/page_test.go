package status_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/ferrolb/ferrolb/internal/status"
)

// TestPage: the page's routes over HTTP, against the real API server: the HTML has the same
// content as the text (escaped), loads nothing from elsewhere (its Content-Security-Policy
// allows its own inline style and script by hash, and requests to its own server only),
// shows no secret; status.json is the report; the page refuses writes.
func TestPage(t *testing.T) {
	fixtures(t)
	srv := httptest.NewServer(status.NewPage(source(t, env.Config)))
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	resp, page := get("/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		"<title>FerroLB status</title>", "4 pools, 3 Services (1 pending)",
		"<td>lab-l2</td>", "conflict:</span> overlaps pool overlap", "<td class=\"bad\">Invalid</td>",
		"<td>status-demo/web-l2</td>", "192.0.2.200 <span class=\"pool\">pool lab-l2</span>",
		"announced: 192.0.2.200 by node-c (layer 2 on eth0)",
		"advertised: 198.51.100.10 by node-a to router-v4 (Established)",
		"<span class=\"label bad\">pending</span><span>NoAddress: refused IPv4: no free IPv4 address in pool lab-l2</span>",
		"<td class=\"ok\">Established</td>", "<td class=\"bad\">Down</td>",
		"DaemonSet ferrolb-system/ferrolb-speaker: 2/3 ready", "<td class=\"bad\">CrashLoopBackOff</td>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, never := range []string{secretPassword, secretName, "other-class", "http://", "https://", "<link rel=\"stylesheet\"", "<script src", "<img"} {
		if strings.Contains(page, never) {
			t.Errorf("the page has %q", never)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") ||
		!regexp.MustCompile(`script-src 'sha256-[A-Za-z0-9+/=]+'`).MatchString(csp) {
		t.Errorf("Content-Security-Policy = %q", csp)
	}

	resp, body := get("/status.json")
	var r status.Report
	if err := json.Unmarshal([]byte(body), &r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /status.json = %s, %v", resp.Status, err)
	}
	if len(r.Pools) != 4 || len(r.Services) != 3 || r.Format != status.Format {
		t.Errorf("status.json: %d pools, %d Services, format %q", len(r.Pools), len(r.Services), r.Format)
	}

	resp, frag := get("/fragment")
	if resp.StatusCode != http.StatusOK || strings.Contains(frag, "<html") || !strings.Contains(frag, "<td>status-demo/web-l2</td>") {
		t.Errorf("GET /fragment = %s, %q", resp.Status, frag)
	}
	if resp, _ := get("/secrets"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /secrets = %s, want 404", resp.Status)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		req, _ := http.NewRequest(m, srv.URL+"/", strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s / = %s, want 405", m, resp.Status)
		}
	}
}

// TestPageError: when the report cannot be read, the page says why and status.json answers
// 503 with the error.
func TestPageError(t *testing.T) {
	cfg := rest.CopyConfig(env.Config)
	cfg.Host = "https://127.0.0.1:1"
	srv := httptest.NewServer(status.NewPage(source(t, cfg)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(body["error"], "cannot reach the API server at https://127.0.0.1:1") {
		t.Errorf("GET /status.json = %s %v %v", resp.Status, body, err)
	}
	resp, err = http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `<p class="error" id="error">cannot reach the API server at https://127.0.0.1:1`) {
		t.Errorf("the page does not say the API server cannot be reached:\n%s", page)
	}
}
