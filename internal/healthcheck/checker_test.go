package healthcheck_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrolb/ferrolb/internal/healthcheck"
)

// fast is the quickest check the bounds allow, deciding on one probe, so each test takes
// a few seconds.
func fast(k healthcheck.Kind) healthcheck.Check {
	return healthcheck.Check{Kind: k, Interval: time.Second, Timeout: 300 * time.Millisecond, HealthyThreshold: 1, UnhealthyThreshold: 1}
}

// run starts c until the test ends, and checks that Run returned and left no goroutine.
func run(t *testing.T, c *healthcheck.Checker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5 s of its context ending")
		}
	})
}

// listen opens a TCP listener on loopback, closed when the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

func addrOf(ln net.Listener) netip.AddrPort {
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// serve answers HTTP on ln with status() until the test ends.
func serve(t *testing.T, ln net.Listener, status func() int) {
	t.Helper()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status())
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

// waitVerdict polls until target's verdict is unhealthy (or not) and returns the reason.
func waitVerdict(t *testing.T, c *healthcheck.Checker, target healthcheck.Target, unhealthy bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		why, bad := c.Unhealthy()[target]
		if bad == unhealthy {
			return why
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: unhealthy %v after 10 s, want %v", target.Addr, bad, unhealthy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A TCP check: a listening port is healthy; once nothing listens (connection refused) it
// turns unhealthy, and back when something listens again.
func TestTCP(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Run("", func(t *testing.T) {
		ln := listen(t)
		addr := addrOf(ln)
		c := healthcheck.New(healthcheck.Config{})
		run(t, c)
		target := healthcheck.Target{Addr: addr, Check: fast(healthcheck.TCP)}
		c.Set([]healthcheck.Target{target})
		waitProbes(t, c, healthcheck.TCP, true, 1)
		if _, bad := c.Unhealthy()[target]; bad {
			t.Fatal("a listening port is unhealthy")
		}
		_ = ln.Close()
		why := waitVerdict(t, c, target, true)
		t.Logf("closed port: %s", why)
		if !strings.Contains(why, "refused") {
			t.Errorf("reason %q does not say the connection was refused", why)
		}
		ln2, err := net.Listen("tcp", addr.String())
		if err != nil {
			t.Skipf("port %v taken meanwhile: %v", addr, err)
		}
		defer ln2.Close()
		waitVerdict(t, c, target, false)
	})
}

// waitProbes waits until at least n probes of kind had the outcome.
func waitProbes(t *testing.T, c *healthcheck.Checker, kind healthcheck.Kind, success bool, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, p := range c.Probes() {
			if p.Kind == kind && p.Success == success && p.Count >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d %v probes with success %v in 10 s: %v", n, kind, success, c.Probes())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An HTTP check: 200 healthy; 500 unhealthy after the unhealthy threshold, healthy again
// after the healthy threshold; OnChange says so each time.
func TestHTTPStatus(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Run("", func(t *testing.T) {
		ln := listen(t)
		var status atomic.Int32
		status.Store(http.StatusOK)
		serve(t, ln, func() int { return int(status.Load()) })
		var changes atomic.Int32
		c := healthcheck.New(healthcheck.Config{OnChange: func() { changes.Add(1) }})
		run(t, c)
		check := fast(healthcheck.HTTP)
		check.Path = "/healthz"
		check.UnhealthyThreshold, check.HealthyThreshold = 2, 2
		target := healthcheck.Target{Addr: addrOf(ln), Check: check}
		// A wrong path answers 404: unhealthy; the right one is not.
		wrong := target
		wrong.Check.Path = "/nothing-here"
		c.Set([]healthcheck.Target{target, wrong})
		if why := waitVerdict(t, c, wrong, true); !strings.Contains(why, "404") {
			t.Errorf("reason %q does not name the status", why)
		}
		if _, bad := c.Unhealthy()[target]; bad {
			t.Fatal("an endpoint answering 200 is unhealthy")
		}
		c.Set([]healthcheck.Target{target})
		changes.Store(0)
		before := probesOf(c, healthcheck.HTTP, false)
		status.Store(http.StatusInternalServerError)
		why := waitVerdict(t, c, target, true)
		if !strings.Contains(why, "500") {
			t.Errorf("reason %q does not name the status", why)
		}
		if n := probesOf(c, healthcheck.HTTP, false) - before; n < 2 {
			t.Errorf("unhealthy after %d failed probes, want the threshold (2)", n)
		}
		status.Store(http.StatusOK)
		waitVerdict(t, c, target, false)
		if n := changes.Load(); n != 2 {
			t.Errorf("OnChange called %d times for two changes", n)
		}
	})
}

func probesOf(c *healthcheck.Checker, kind healthcheck.Kind, success bool) uint64 {
	for _, p := range c.Probes() {
		if p.Kind == kind && p.Success == success {
			return p.Count
		}
	}
	return 0
}

// A backend that accepts connections and never answers: its TCP check passes (the kernel
// accepts for it), its HTTP check fails within the timeout. The speaker stopping ends the
// probe in flight at once, and no goroutine is left.
func TestHang(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Run("", func(t *testing.T) {
		ln := listen(t)
		var (
			mu    sync.Mutex
			conns []net.Conn
		)
		accepted := make(chan struct{})
		go func() {
			defer close(accepted)
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, conn) // held open, never read or answered
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			_ = ln.Close()
			<-accepted
			mu.Lock()
			for _, c := range conns {
				_ = c.Close()
			}
			mu.Unlock()
		})
		c := healthcheck.New(healthcheck.Config{})
		run(t, c)
		tcp := healthcheck.Target{Addr: addrOf(ln), Check: fast(healthcheck.TCP)}
		web := healthcheck.Target{Addr: addrOf(ln), Check: fast(healthcheck.HTTP)}
		c.Set([]healthcheck.Target{tcp, web})
		why := waitVerdict(t, c, web, true)
		if why != "answer: no answer within 300ms" {
			t.Errorf("reason %q", why)
		}
		if _, bad := c.Unhealthy()[tcp]; bad {
			t.Error("the TCP check of a process that hangs failed: the kernel accepts for it")
		}
	})
}

// A new target is healthy until it has failed (fail open), and one removed is forgotten;
// a target whose check is invalid is never probed. Targets go through Do: the probes'
// sockets are made where it says.
func TestFailOpenAndSet(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Run("", func(t *testing.T) {
		ln := listen(t)
		closed := addrOf(ln)
		_ = ln.Close()
		var dials atomic.Int32
		c := healthcheck.New(healthcheck.Config{Do: func(f func() error) error { dials.Add(1); return f() }})
		run(t, c)
		target := healthcheck.Target{Addr: closed, Check: fast(healthcheck.TCP)}
		c.Set([]healthcheck.Target{target})
		if len(c.Unhealthy()) != 0 {
			t.Fatal("a new target is unhealthy before any probe")
		}
		waitVerdict(t, c, target, true)
		if dials.Load() == 0 {
			t.Error("the probe did not dial through Config.Do")
		}
		// Given again, it keeps its verdict; removed, it is forgotten and no longer probed.
		c.Set([]healthcheck.Target{target})
		if _, bad := c.Unhealthy()[target]; !bad {
			t.Error("a target given again lost its verdict")
		}
		c.Set(nil)
		if len(c.Unhealthy()) != 0 {
			t.Error("a removed target is still unhealthy")
		}
		// An invalid check (a path that would write headers of its own) is never probed.
		bad := fast(healthcheck.HTTP)
		bad.Path = "/x HTTP/1.1\r\nHost: elsewhere\r\n\r\n"
		n := probesOf(c, healthcheck.HTTP, false) + probesOf(c, healthcheck.HTTP, true)
		c.Set([]healthcheck.Target{{Addr: closed, Check: bad}})
		time.Sleep(2500 * time.Millisecond)
		if m := probesOf(c, healthcheck.HTTP, false) + probesOf(c, healthcheck.HTTP, true); m != n || len(c.Unhealthy()) != 0 {
			t.Errorf("a target with an invalid check was probed (%d probes) or is unhealthy (%v)", m-n, c.Unhealthy())
		}
	})
}

func TestValidate(t *testing.T) {
	good := healthcheck.Default(healthcheck.HTTP)
	if err := good.Validate(); err != nil {
		t.Fatalf("the default check: %v", err)
	}
	// The defaults keep the promise: out within 3 intervals.
	if d := time.Duration(good.UnhealthyThreshold)*good.Interval + good.Timeout; d >= 3*good.Interval {
		t.Errorf("the defaults detect in up to %v, not within 3 intervals", d)
	}
	for _, tc := range []struct {
		name string
		mut  func(*healthcheck.Check)
		want string
	}{
		{"kind", func(c *healthcheck.Check) { c.Kind = 0 }, "kind"},
		{"interval too short", func(c *healthcheck.Check) { c.Interval = time.Millisecond }, "interval"},
		{"interval too long", func(c *healthcheck.Check) { c.Interval = time.Hour }, "interval"},
		{"timeout not shorter than the interval", func(c *healthcheck.Check) { c.Timeout = c.Interval }, "timeout"},
		{"thresholds", func(c *healthcheck.Check) { c.HealthyThreshold = 0 }, "healthy threshold"},
		{"unhealthy threshold", func(c *healthcheck.Check) { c.UnhealthyThreshold = 11 }, "unhealthy threshold"},
		{"path with a line break", func(c *healthcheck.Check) { c.Path = "/\r\nX-Injected: 1" }, "path"},
		{"path with a space", func(c *healthcheck.Check) { c.Path = "/ HTTP/1.0" }, "path"},
		{"path not absolute", func(c *healthcheck.Check) { c.Path = "healthz" }, "path"},
		{"path too long", func(c *healthcheck.Check) { c.Path = "/" + strings.Repeat("a", healthcheck.MaxPathLen) }, "path"},
	} {
		c := good
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
			t.Errorf("%s: %v, want an error about %s", tc.name, err, tc.want)
		}
	}
	if _, err := healthcheck.ParseKind("udp"); err == nil {
		t.Error("udp is a kind of check")
	}
}
