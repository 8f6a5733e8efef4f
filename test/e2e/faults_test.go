package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/ferrolb/ferrolb/api/v1alpha1"
	"github.com/ferrolb/ferrolb/internal/lab"
	labfrr "github.com/ferrolb/ferrolb/internal/lab/frr"
	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// The fault tests measure as they check: each probe runs in its own goroutine and records
// what it saw against the time since the fault; the test logs a summary per phase (the
// figures in docs/performance.md come from these logs) and fails on what must never happen.

// timeline is what the probes saw, by probe, in order.
type timeline struct {
	t0 time.Time
	mu sync.Mutex
	// seen: probe -> samples; a sample's value is what the probe saw ("node-b", "3", "ok").
	seen  map[string][]sample
	order []string
}

type sample struct {
	at  time.Duration // since t0
	val string
}

func newTimeline() *timeline { return &timeline{t0: time.Now(), seen: map[string][]sample{}} }

func (tl *timeline) add(probe, val string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if _, ok := tl.seen[probe]; !ok {
		tl.order = append(tl.order, probe)
	}
	tl.seen[probe] = append(tl.seen[probe], sample{time.Since(tl.t0), val})
}

// probe runs f every interval until ctx ends, recording its value under name.
func (tl *timeline) probe(ctx context.Context, wg *sync.WaitGroup, name string, interval time.Duration, f func(context.Context) string) {
	wg.Go(func() {
		for ctx.Err() == nil {
			start := time.Now()
			v := f(ctx)
			if ctx.Err() != nil {
				return
			}
			tl.add(name, v)
			select {
			case <-ctx.Done():
			case <-time.After(interval - time.Since(start)):
			}
		}
	})
}

// phase is a named span of the timeline.
type phase struct {
	name     string
	from, to time.Duration
}

// summary counts each probe's values in each phase and the longest span in which the value
// was bad (a span runs from the first bad sample to the next good one).
func (tl *timeline) summary(phases []phase, bad func(probe, val string) bool) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var b strings.Builder
	for _, ph := range phases {
		fmt.Fprintf(&b, "%s (%.1f s to %.1f s):\n", ph.name, ph.from.Seconds(), ph.to.Seconds())
		for _, p := range tl.order {
			counts := map[string]int{}
			var longest, start time.Duration
			inBad := false
			n := 0
			for _, s := range tl.seen[p] {
				if s.at < ph.from || s.at >= ph.to {
					continue
				}
				n++
				counts[s.val]++
				switch isBad := bad(p, s.val); {
				case isBad && !inBad:
					inBad, start = true, s.at
				case !isBad && inBad:
					inBad = false
					longest = max(longest, s.at-start)
				}
			}
			if inBad {
				longest = max(longest, ph.to-start)
			}
			keys := make([]string, 0, len(counts))
			for k := range counts {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			var parts []string
			for _, k := range keys {
				v := k
				if v == "" {
					v = "none"
				}
				parts = append(parts, fmt.Sprintf("%s x%d", v, counts[k]))
			}
			fmt.Fprintf(&b, "  %-34s %4d samples: %s", p, n, strings.Join(parts, ", "))
			if longest > 0 {
				fmt.Fprintf(&b, "; longest bad span %.0f ms", float64(longest.Microseconds())/1000)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// violations lists the samples for which ok says no.
func (tl *timeline) violations(ok func(probe string, s sample) bool) []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []string
	for _, p := range tl.order {
		for _, s := range tl.seen[p] {
			if !ok(p, s) {
				out = append(out, fmt.Sprintf("%s at %.2f s: %q", p, s.at.Seconds(), s.val))
			}
		}
	}
	return out
}

// arpAnswers returns the nodes that answer an ARP request for vip from the client (two
// requests 0.3 s apart, every reply within 1 s), sorted and joined by "+": "" for none,
// "node-a+node-b" for two.
func arpAnswers(l *lab.Lab, macs map[string]string, vip string) string {
	out, _ := l.Client.Run("arping", "-c", "2", "-W", "0.3", "-w", "1", "-i", "eth0", "-S", lab.ClientIP4, vip)
	var nodes []string
	for f := range strings.FieldsSeq(strings.ToLower(out)) {
		if strings.Count(f, ":") != 5 {
			continue
		}
		n := macs[f]
		if n == "" {
			n = f
		}
		if !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	slices.Sort(nodes)
	return strings.Join(nodes, "+")
}

// nodeMACs maps each node's eth0 MAC to its name.
func nodeMACs(t *testing.T, l *lab.Lab) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range l.Nodes {
		out[strings.TrimSpace(n.NS.MustRun(t, "cat", "/sys/class/net/eth0/address"))] = n.Name
	}
	return out
}

// getOK is "ok" when a GET from ns to addr is answered by a backend within timeout.
func getOK(ctx context.Context, ns *netns.NS, addr string, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if body, err := lab.Get(ctx, ns, addr); err == nil && strings.HasPrefix(body, "pod-") {
		return "ok"
	}
	return "fail"
}

func routeCount(ns *netns.NS, addr string) string {
	nh, err := labfrr.KernelNexthops(ns, lab.HostPrefix(addr))
	if err != nil {
		return "error"
	}
	return fmt.Sprint(len(nh))
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return d
}

// TestFaultAPIServerUnreachable: every node loses the API server (its relay stops: the
// speakers' and kube-proxies' connections close and new ones are refused) for
// FERROLB_E2E_API_DOWN (default 30 s; docs/performance.md has 60 s). Halfway, the speaker
// that answers for the layer 2 address is killed and started again, with the API server
// still unreachable. Throughout, exactly one node answers ARP for the layer 2 address, the
// router keeps a route for both BGP addresses, and the clients are answered, but for the
// moments of the restart. Then the API server comes back, and the test measures how long
// Services created at that moment take to answer through every node.
func TestFaultAPIServerUnreachable(t *testing.T) {
	l := getLab(t)
	window := envDuration(t, "FERROLB_E2E_API_DOWN", 30*time.Second)
	l2vip := addresses(t, l, lab.ServiceL2)[0]
	bgpVIPs := addresses(t, l, lab.ServiceBGP)
	answers(t, l.Client, l2vip, 15*time.Second)
	for _, a := range bgpVIPs {
		waitNexthops(t, l, a, nodeAddrs(l, strings.Contains(a, ":")))
	}
	// The fault is measured from a steady state: the lab's sessions came up moments ago (this
	// file's tests run first), and a BFD session that flaps once while they settle would be
	// counted against the fault.
	steadyNexthops(t, l, bgpVIPs, 5*time.Second)
	macs := nodeMACs(t, l)
	var announcer string
	eventually(t, 15*time.Second, "one node answers "+l2vip, func() (bool, string) {
		announcer = arpAnswers(l, macs, l2vip)
		return l.Node(announcer) != nil, announcer
	})

	ctx, stopProbes := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { stopProbes(); wg.Wait() }()
	for _, n := range l.Nodes {
		l.CutAPI(n)
	}
	t.Cleanup(func() {
		for _, n := range l.Nodes {
			if err := l.RestoreAPI(n); err != nil {
				t.Error(err)
			}
		}
	})
	tl := newTimeline()
	tl.probe(ctx, &wg, "ARP "+l2vip+" answered by", 0, func(context.Context) string { return arpAnswers(l, macs, l2vip) })
	tl.probe(ctx, &wg, "GET "+l2vip+" from the LAN", 200*time.Millisecond, func(ctx context.Context) string {
		return getOK(ctx, l.Client, l2vip, time.Second)
	})
	for _, a := range bgpVIPs {
		tl.probe(ctx, &wg, "router's next hops for "+a, 100*time.Millisecond, func(context.Context) string { return routeCount(l.Router, a) })
		tl.probe(ctx, &wg, "GET "+a+" from the WAN", 200*time.Millisecond, func(ctx context.Context) string {
			return getOK(ctx, l.WAN, a, time.Second)
		})
	}

	// Halfway: the announcer's speaker crashes and starts again, the API server still
	// unreachable. It comes back from its state file.
	time.Sleep(window / 2)
	restartAt := time.Since(tl.t0)
	n := l.Node(announcer)
	l.KillSpeaker(n)
	if err := l.StartSpeaker(n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(window - time.Since(tl.t0))

	// The API server is back; Services created now must reach the nodes' caches.
	returnAt := time.Since(tl.t0)
	for _, n := range l.Nodes {
		if err := l.RestoreAPI(n); err != nil {
			t.Fatal(err)
		}
	}
	created := map[string]string{"web-return-l2": "lab-l2", "web-return-bgp": "lab-bgp"}
	for name, pool := range created {
		if err := l.CreateService(t.Context(), name, pool, false); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteService(l, name) })
	}
	newVIP := map[string]string{}
	eventually(t, 15*time.Second, "the new Services get addresses", func() (bool, string) {
		for name := range created {
			if a, _ := l.Addresses(t.Context(), name); len(a) == 1 {
				newVIP[name] = a[0]
			}
		}
		return len(newVIP) == len(created), fmt.Sprint(newVIP)
	})
	answeredAfter := map[string]time.Duration{}
	for name, from := range map[string]*netns.NS{"web-return-l2": l.Client, "web-return-bgp": l.WAN} {
		answers(t, from, newVIP[name], 100*time.Second)
		answeredAfter[name] = time.Since(tl.t0) - returnAt
	}
	// The BGP one through every node: each speaker's caches are live again. Each speaker's
	// informers come back on client-go's own backoff (up to 30 s, with jitter), each on
	// its own schedule, so a node may follow the first answer by as long as the answers
	// themselves took: the same bound as answers'.
	waitNexthopsWithin(t, l, newVIP["web-return-bgp"], nodeAddrs(l, false), 100*time.Second)
	allNodesAfter := time.Since(tl.t0) - returnAt
	end := time.Since(tl.t0)
	stopProbes()
	wg.Wait()

	t.Logf("API server unreachable from every node for %v; %s's speaker (the layer 2 announcer) killed and restarted at %.1f s\n%s",
		window, announcer, restartAt.Seconds(), tl.summary([]phase{
			{"API server unreachable, speakers running", 0, restartAt},
			{"API server unreachable, " + announcer + "'s speaker restarted", restartAt, returnAt},
			{"API server back", returnAt, end},
		}, func(probe, val string) bool {
			switch {
			case strings.HasPrefix(probe, "ARP"):
				return !strings.HasPrefix(val, "node-") || strings.Contains(val, "+")
			case strings.HasPrefix(probe, "router"):
				return val != "3"
			}
			return val != "ok"
		}))
	// Where the layer 2 address went while its announcer restarted: the first sample after
	// the kill answered by another node alone, and the first answered by the announcer
	// alone again.
	var movedAt, backAt time.Duration
	for _, s := range tl.seen["ARP "+l2vip+" answered by"] {
		switch {
		case s.at < restartAt:
		case movedAt == 0 && l.Node(s.val) != nil && s.val != announcer:
			movedAt = s.at - restartAt
		case movedAt != 0 && backAt == 0 && s.val == announcer:
			backAt = s.at - restartAt
		}
	}
	t.Logf("the layer 2 address: answered by another node %v after %s's speaker was killed (first sample), by %s again %v after (ARP samples about 0.6 s apart)",
		movedAt.Round(time.Millisecond), announcer, announcer, backAt.Round(time.Millisecond))
	t.Logf("after the API server came back: a new layer 2 Service answered after %v, a new BGP Service after %v, through all 3 nodes after %v",
		answeredAfter["web-return-l2"].Round(time.Millisecond), answeredAfter["web-return-bgp"].Round(time.Millisecond), allNodesAfter.Round(time.Millisecond))
	if log, err := os.ReadFile(filepath.Join(l.Dir, announcer+"-speaker.log")); err != nil || !strings.Contains(string(log), "announcing from the state file") {
		t.Errorf("%s's restarted speaker did not say it announced from its state file (%v)", announcer, err)
	}
	// Never two nodes, never no route; no answer and failed requests only around the restart.
	restart := func(s sample, within time.Duration) bool { return s.at >= restartAt && s.at < restartAt+within }
	for _, v := range tl.violations(func(probe string, s sample) bool {
		switch {
		case strings.HasPrefix(probe, "ARP"):
			return !strings.Contains(s.val, "+") && (s.val != "" || restart(s, 3*time.Second))
		case strings.HasPrefix(probe, "router"):
			return s.val != "0" && (s.val == "3" || restart(s, 30*time.Second))
		}
		return s.val == "ok" || restart(s, 3*time.Second)
	}) {
		t.Error(v)
	}
	// Each node's state file follows the API server again.
	for _, n := range l.Nodes {
		eventually(t, 15*time.Second, n.Name+"'s state file lists "+newVIP["web-return-l2"], func() (bool, string) {
			b, err := os.ReadFile(filepath.Join(l.Dir, "state", n.Name, "speaker.json"))
			return err == nil && strings.Contains(string(b), `"`+newVIP["web-return-l2"]+`"`), fmt.Sprint(err)
		})
	}
}

func deleteService(l *lab.Lab, name string) {
	_ = l.Env.Client.Delete(context.Background(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}})
}

// TestFaultRouterRestart: the router (FRR) restarts, first as the lab runs it (zebra removes
// its routes when it stops), then with graceful restart (bgp graceful-restart, and zebra
// keeping its routes in the kernel across the restart), with graceful restart negotiated on
// the nodes' sessions too. The test measures how long traffic from the WAN client stops and
// how long the router has no route, until its route is back over every node. With graceful
// restart traffic must not stop, also when the router is down for 10 s. FERROLB_E2E_CONNECT_TIME
// sets the BGPPeers' connectTime (default: none, that is 5 s).
func TestFaultRouterRestart(t *testing.T) {
	l := getLab(t)
	ctx := t.Context()
	vips := addresses(t, l, lab.ServiceBGP)
	connect := envDuration(t, "FERROLB_E2E_CONNECT_TIME", 0)
	// Graceful restart on the nodes' side too (and connectTime if asked); put back after.
	for _, name := range []string{"router-v4", "router-v6"} {
		var p v1.BGPPeer
		if err := l.Env.Client.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		before := p.DeepCopy()
		p.Spec.GracefulRestart = &v1.GracefulRestart{Enabled: true}
		if connect > 0 {
			p.Spec.ConnectTime = &metav1.Duration{Duration: connect}
		}
		if err := l.Env.Client.Patch(ctx, &p, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			var now v1.BGPPeer
			if err := l.Env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &now); err != nil {
				t.Error(err)
				return
			}
			back := now.DeepCopy()
			back.Spec = before.Spec
			if err := l.Env.Client.Patch(context.Background(), back, client.MergeFrom(&now)); err != nil {
				t.Error(err)
			}
		})
	}
	// A session whose first attempt fails waits connectTime before the next.
	within := 60*time.Second + 2*connect
	steady := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		for _, a := range vips {
			want := nodeAddrs(l, strings.Contains(a, ":"))
			slices.Sort(want)
			eventually(t, within, what+": the router's route for "+a, func() (bool, string) {
				got := nexthops(t, l, a)
				return slices.Equal(got, want), fmt.Sprintf("via %v, want %v", got, want)
			})
		}
		eventually(t, within, what+": every session Established", func() (bool, string) {
			for _, n := range l.Nodes {
				for _, addr := range []string{n.IPv4, n.IPv6} {
					nb, err := l.FRR.Neighbor(addr)
					if err != nil || nb.BGPState != "Established" {
						return false, fmt.Sprintf("%s: %+v %v", addr, nb, err)
					}
				}
			}
			return true, ""
		})
		return time.Since(start)
	}
	steady("graceful restart negotiated")
	t.Cleanup(func() {
		if err := l.RestartRouter(false, 0); err != nil {
			t.Error(err)
		}
		steady("the lab's router again")
	})

	measure := func(name string, graceful bool, down time.Duration) (stopped map[string]time.Duration) {
		t.Helper()
		pctx, stopProbes := context.WithCancel(ctx)
		var wg sync.WaitGroup
		tl := newTimeline()
		for _, a := range vips {
			tl.probe(pctx, &wg, "router's next hops for "+a, 20*time.Millisecond, func(context.Context) string { return routeCount(l.Router, a) })
			tl.probe(pctx, &wg, "GET "+a+" from the WAN", 50*time.Millisecond, func(ctx context.Context) string {
				return getOK(ctx, l.WAN, a, 300*time.Millisecond)
			})
		}
		time.Sleep(time.Second)
		at := time.Since(tl.t0)
		if err := l.RestartRouter(graceful, down); err != nil {
			stopProbes()
			wg.Wait()
			t.Fatal(err)
		}
		restarted := time.Since(tl.t0)
		back := steady(name)
		end := time.Since(tl.t0)
		stopProbes()
		wg.Wait()
		t.Logf("%s: FRR stopped and started again in %.1f s; its route over all 3 nodes and every session back %.1f s after it started\n%s",
			name, (restarted - at).Seconds(), back.Seconds(), tl.summary([]phase{{"restart", at, end}}, func(probe, val string) bool {
				if strings.HasPrefix(probe, "router") {
					return val == "0"
				}
				return val != "ok"
			}))
		stopped = map[string]time.Duration{}
		for _, a := range vips {
			// Traffic stopped from the last answered request before a failure to the first
			// answered one after it.
			lastOK, failed := at, false
			for _, s := range tl.seen["GET "+a+" from the WAN"] {
				switch {
				case s.at < at:
				case s.val != "ok":
					failed = true
				default:
					if failed {
						stopped[a] = max(stopped[a], s.at-lastOK)
					}
					lastOK, failed = s.at, false
				}
			}
			if failed {
				stopped[a] = max(stopped[a], end-lastOK)
			}
		}
		return stopped
	}
	plain := measure("router restart as the lab runs it (zebra removes its routes)", false, 0)
	t.Logf("traffic from the WAN stopped for %v (longest gap between answered requests, 50 ms apart)", plain)
	// Once to start zebra keeping its routes, then the restarts that count: at once, and
	// down for 10 s (longer than the nodes' first attempt to connect, 1.5 to 2 s after the
	// session went down).
	measure("router restart into graceful restart (zebra -r -K)", true, 0)
	graceful := measure("graceful router restart", true, 0)
	t.Logf("traffic from the WAN stopped for %v with graceful restart", graceful)
	slow := measure("graceful router restart, down for 10 s", true, 10*time.Second)
	t.Logf("traffic from the WAN stopped for %v with graceful restart, the router down for 10 s", slow)
	// The IPv6 session has no BFD: its route must stay. The IPv4 one runs BFD, and FRR
	// resets every new session with BFD once, about 3 s after it came up (it replaces its
	// BFD session; docs/architecture.md): that reset, a NOTIFICATION from the node, ends
	// graceful restart and the route goes until the session is back.
	for _, m := range []map[string]time.Duration{graceful, slow} {
		for a, d := range m {
			if strings.Contains(a, ":") && d > time.Second {
				t.Errorf("%s: traffic stopped for %v through a graceful restart of the router", a, d)
			}
		}
	}
}

// steadyNexthops waits until the router has held every node as a next hop of each address for
// a whole period, and logs it when that took a restart of the period.
func steadyNexthops(t *testing.T, l *lab.Lab, addrs []string, period time.Duration) {
	t.Helper()
	start := time.Now()
	since := time.Now()
	for time.Since(since) < period {
		for _, a := range addrs {
			want := nodeAddrs(l, strings.Contains(a, ":"))
			slices.Sort(want)
			if got := nexthops(t, l, a); !slices.Equal(got, want) {
				t.Logf("router's route for %s via %v at %.1f s, want %v: waiting for a steady %s", a, got, time.Since(start).Seconds(), want, period)
				since = time.Now()
			}
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the router's routes did not hold steady for %s within 60 s", period)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
