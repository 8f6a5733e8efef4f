package controller_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/config"
	"github.com/ferrolb/ferrolb/internal/controller"
	"github.com/ferrolb/ferrolb/internal/status"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// TestStatusPageConditions: the conditions the status package reads by name are the ones the
// controller writes.
func TestStatusPageConditions(t *testing.T) {
	if status.ConditionAllocated != controller.ConditionAllocated {
		t.Errorf("status reads %q, the controller writes %q", status.ConditionAllocated, controller.ConditionAllocated)
	}
}

// TestStatusPageInBrowser: the controller's status page, served against the real API server,
// in a real browser (headless Chromium, driven by chromedp). The page shows the pool, the
// Service, the address the controller gave it and the node a speaker says announces it; a
// screenshot is taken (a PNG in the test's directory); and when the announcer changes, the
// page shows the new one by itself, without a reload. The browser reports no error: no
// script or style blocked by the page's Content-Security-Policy, no script exception.
func TestStatusPageInBrowser(t *testing.T) {
	chromium := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		t.Skip("chromium is not installed (Debian's package chromium, which hack/deps.sh installs): " +
			"the status page's browser test needs it")
	}
	ctx := context.Background()
	const ns = "status-page"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	pool := &v1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "status-page-pool"}, Spec: v1.IPPoolSpec{
		Blocks: []v1.IPBlock{{Start: "198.18.0.10", Stop: "198.18.0.12"}}, AutoAssign: ptr.To(false)}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-page",
		Annotations: map[string]string{config.AnnotationPool: pool.Name}}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	for _, o := range []client.Object{pool, svc} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	stop := testrun.Background(t, "controller --status-bind-address", func(ctx context.Context) error {
		return controller.Run(ctx, env.Config, controller.Options{MetricsAddr: "0", HealthAddr: "0",
			StatusAddr: addr, SpeakerNamespace: ns, Restartable: true})
	})
	defer stop()

	// The controller gives the Service its address; a speaker would then say who announces it.
	ip := ""
	poll(t, func() string {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return err.Error()
		}
		if len(svc.Status.LoadBalancer.Ingress) == 0 {
			return "the Service has no address"
		}
		ip = svc.Status.LoadBalancer.Ingress[0].IP
		return ""
	})
	announce(t, svc, "announced: "+ip+" by node-alpha (layer 2 on eth0)")
	url := "http://" + addr + "/"
	poll(t, func() string { // the page's reading is at most a second old: wait for one with the announcer
		body, err := get(url + "status.json")
		if err != nil || !strings.Contains(body, "by node-alpha") {
			return fmt.Sprintf("status.json does not show the announcer yet (%v)", err)
		}
		return ""
	})

	bctx, cancel := browser(t, chromium)
	defer cancel()
	// Everything the page writes to the console, and what the browser logs about it (a
	// style or script the Content-Security-Policy blocks, a request that fails).
	var (
		mu       sync.Mutex
		problems []string
	)
	cctx, stopConsole := context.WithCancel(bctx)
	messages := chromedp.Console(cctx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	if err := chromedp.Do(bctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#services table"))); err != nil {
		t.Fatal(err)
	}
	run := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	run(`window.ferrolbNotReloaded = "yes"`)
	text := run(`document.body.innerText`)
	t.Logf("the page reads:\n%s", text)
	for _, want := range []string{pool.Name, ns + "/" + svc.Name, ip, "by node-alpha (layer 2 on eth0)", "Ready"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	shoot := func(name string) {
		t.Helper()
		shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		screenshot(t, shot, name)
	}
	shoot("status-page.png")

	// The announcer changes; the page follows without a reload.
	announce(t, svc, "announced: "+ip+" by node-bravo (layer 2 on eth0)")
	deadline := time.Now().Add(20 * time.Second)
	for {
		text = run(`document.body.innerText`)
		if run(`String(window.ferrolbNotReloaded)`) != "yes" {
			t.Fatal("the page was reloaded; it must refresh its content in place")
		}
		if strings.Contains(text, "by node-bravo") && !strings.Contains(text, "by node-alpha") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s the page still does not show the new announcer:\n%s", text)
		}
		time.Sleep(200 * time.Millisecond)
	}
	shoot("status-page-changed.png")
	stopConsole()
	<-consoleDone
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(problems, "\n"))
	}
}

// browser starts headless Chromium (as root it needs --no-sandbox) with a profile of its own
// in a temporary directory, which chromedp removes when cancelled.
func browser(t *testing.T, path string) (context.Context, context.CancelFunc) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	tctx, cancelTimeout := context.WithTimeout(bctx, 2*time.Minute)
	return tctx, func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
	}
}

// screenshot checks shot is a PNG with pixels and writes it to the test's directory (kept
// with -test.v's log naming it, for a person to look at).
func screenshot(t *testing.T, shot []byte, name string) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() == 0 || b.Dy() == 0 {
		t.Fatalf("the screenshot is empty: %v", b)
	}
	path := filepath.Join(t.TempDir(), name)
	if dir := os.Getenv("FERROLB_SCREENSHOT_DIR"); dir != "" {
		path = filepath.Join(dir, name)
	}
	if err := os.WriteFile(path, shot, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%dx%d, %d bytes)", path, img.Bounds().Dx(), img.Bounds().Dy(), len(shot))
}

// announce sets svc's Announced condition as a speaker does (retrying when the controller
// wrote the Service meanwhile).
func announce(t *testing.T, svc *corev1.Service, message string) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		meta.SetStatusCondition(&svc.Status.Conditions, metav1.Condition{Type: config.ConditionAnnounced,
			Status: metav1.ConditionTrue, Reason: "Layer2", Message: message})
		return env.Client.Status().Update(ctx, svc)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
