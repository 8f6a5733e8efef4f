// Package frr runs FRR (zebra, bfdd, bgpd from Debian's package) as the router of a network
// namespace, with a configuration and a run directory of its own and no systemd, so tests,
// benchmarks and the lab each get a real router, and reads its state as JSON from vtysh.
package frr

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrolb/ferrolb/internal/lab/netns"
)

// Bin is where Debian installs FRR's daemons.
const Bin = "/usr/lib/frr"

// bfddConf offers one BFD profile, "fast": 100 ms x 3. bgpd refers to it with
// `neighbor X bfd profile fast`.
const bfddConf = "hostname router\nlog stdout\n!\nbfd\n profile fast\n  transmit-interval 100\n  receive-interval 100\n  detect-multiplier 3\n !\n!\n"

var daemons = []string{"zebra", "bfdd", "bgpd"}

// Router is FRR running in one namespace.
type Router struct {
	Dir  string // run directory: configs, pid files, vty sockets, logs
	ns   *netns.NS
	cmds []*exec.Cmd
	logs []*os.File
}

// Options are how the daemons run, beyond their configuration.
type Options struct {
	// KeepRoutes makes zebra leave its routes in the kernel when it stops (zebra -r) and,
	// when it starts, keep those a previous run left for this long while bgpd learns them
	// again (zebra -K): a Linux router's forwarding state kept across a restart, as graceful
	// restart (RFC 4724) assumes. Zero: zebra removes its routes when it stops.
	KeepRoutes time.Duration
	// BGPPort is the TCP port bgpd listens on (bgpd -p); zero means BGP's own, 179.
	BGPPort int
}

// Installed reports why FRR cannot run here, or nil.
func Installed() error {
	for _, d := range daemons {
		if _, err := os.Stat(filepath.Join(Bin, d)); err != nil {
			return fmt.Errorf("FRR not installed: %w", err)
		}
	}
	if _, err := user.Lookup("frr"); err != nil {
		return fmt.Errorf("FRR's user: %w", err)
	}
	return nil
}

// Start writes bgpdConf and starts zebra (bgpd needs it to resolve next hops; without it
// every route is invalid), bfdd and bgpd in ns.
func Start(ns *netns.NS, bgpdConf string) (*Router, error) {
	return StartWith(ns, bgpdConf, Options{})
}

// StartWith is Start with opts.
func StartWith(ns *netns.NS, bgpdConf string, opts Options) (*Router, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	u, _ := user.Lookup("frr")
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Not a test's TempDir: its parent is mode 0700, which the frr user cannot traverse.
	dir, err := os.MkdirTemp("", "ferrolb-frr-")
	if err != nil {
		return nil, err
	}
	r := &Router{Dir: dir, ns: ns}
	fail := func(err error) (*Router, error) { return nil, errors.Join(err, r.Stop()) }
	if err := os.Chmod(dir, 0o755); err != nil { //nolint:gosec // the frr user must traverse it
		return fail(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fail(err)
	}
	if err := r.start(bgpdConf, opts); err != nil {
		return fail(err)
	}
	return r, nil
}

// start writes the configurations and starts the daemons.
func (r *Router) start(bgpdConf string, opts Options) error {
	dir := r.Dir
	// Each daemon reads its own file: zebra and bfdd reject bgp lines.
	confs := map[string]string{"bgpd": bgpdConf, "zebra": "hostname router\nlog stdout\n", "bfdd": bfddConf}
	for name, text := range confs {
		if err := os.WriteFile(filepath.Join(dir, name+".conf"), []byte(text), 0o644); err != nil {
			return err
		}
	}
	for _, d := range daemons {
		args := []string{
			"-f", filepath.Join(dir, d+".conf"), "-i", filepath.Join(dir, d+".pid"),
			"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir,
		}
		switch d {
		case "zebra":
			if opts.KeepRoutes > 0 {
				args = append(args, "-r", "-K", strconv.Itoa(int(opts.KeepRoutes/time.Second)))
			}
		case "bgpd":
			port := 179
			if opts.BGPPort != 0 {
				port = opts.BGPPort
			}
			args = append(args, "-p", strconv.Itoa(port))
		case "bfdd":
			// Its control socket defaults to one path for the whole machine.
			args = append(args, "--bfdctl", filepath.Join(dir, "bfdd.sock"))
		}
		cmd := r.ns.Command(filepath.Join(Bin, d), args...)
		logf, err := os.OpenFile(filepath.Join(dir, d+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) //nolint:gosec // our own run directory
		if err != nil {
			return err
		}
		r.logs = append(r.logs, logf)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		r.cmds = append(r.cmds, cmd)
		// Wait for the daemon's vty socket: vtysh needs it, and zebra's zserv socket must
		// exist before bgpd starts or bgpd waits its retry interval.
		sock := filepath.Join(dir, d+".vty")
		deadline := time.Now().Add(15 * time.Second)
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no vty socket after 15s", d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// Restart stops the daemons (as Stop does), waits down, and starts them again with bgpdConf
// and opts: a router's control plane restarted into new software or configuration. Whether the kernel
// keeps the routes meanwhile is up to the Options of the run that stops (see KeepRoutes);
// without KeepRoutes the new run starts without any BGP route in the kernel, as after a
// reboot (zebra 8.4 started without -K after a run with -r left IPv6 next hops of the old
// run beside the new ones).
func (r *Router) Restart(bgpdConf string, down time.Duration, opts Options) error {
	r.stopDaemons()
	time.Sleep(down)
	if opts.KeepRoutes == 0 {
		if err := r.removeBGPRoutes(); err != nil {
			return err
		}
	}
	for _, d := range daemons {
		// A vty socket left behind would pass start's wait before the daemon is up.
		_ = os.Remove(filepath.Join(r.Dir, d+".vty"))
	}
	return r.start(bgpdConf, opts)
}

// ForTest starts FRR for a test and stops it when the test ends, printing the daemons' logs
// if the test failed. It skips the test when FRR is not installed (CI installs it).
func ForTest(t testing.TB, ns *netns.NS, bgpdConf string) *Router {
	t.Helper()
	return ForTestWith(t, ns, bgpdConf, Options{})
}

// ForTestWith is ForTest with opts.
func ForTestWith(t testing.TB, ns *netns.NS, bgpdConf string, opts Options) *Router {
	t.Helper()
	if err := Installed(); err != nil {
		t.Skipf("%v (hack/deps.sh installs it; CI runs it)", err)
	}
	r, err := StartWith(ns, bgpdConf, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FRR logs:\n%s", r.Logs())
		}
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// removeBGPRoutes deletes the kernel's BGP routes (`ip route flush proto bgp` is refused
// here with "Invalid argument"); an ECMP IPv6 route goes one next hop per delete.
func (r *Router) removeBGPRoutes() error {
	for _, fam := range []string{"-4", "-6"} {
		for range 1000 {
			out, err := r.ns.Run("ip", fam, "-j", "route", "show", "proto", "bgp")
			if err != nil {
				return err
			}
			var routes []struct {
				Dst string `json:"dst"`
			}
			if err := json.Unmarshal([]byte(out), &routes); err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			if len(routes) == 0 {
				break
			}
			if _, err := r.ns.Run("ip", fam, "route", "del", routes[0].Dst, "proto", "bgp"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Stop ends the daemons (SIGTERM, then SIGKILL after 5 s) and removes the run directory.
func (r *Router) Stop() error {
	r.stopDaemons()
	return os.RemoveAll(r.Dir)
}

// stopDaemons stops zebra first: with KeepRoutes it leaves its routes in the kernel, and
// bgpd, stopped after it, can no longer withdraw them (stopped first, it would).
func (r *Router) stopDaemons() {
	for _, cmd := range r.cmds {
		// `ip netns exec` execs the daemon, so this is the daemon's own pid.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	r.cmds = nil
	for _, f := range r.logs {
		_ = f.Close()
	}
	r.logs = nil
}

// Logs returns the daemons' logs.
func (r *Router) Logs() string {
	var b strings.Builder
	for _, d := range daemons {
		text, _ := os.ReadFile(filepath.Join(r.Dir, d+".log")) //nolint:gosec // our own run directory
		fmt.Fprintf(&b, "--- %s\n%s", d, text)
	}
	return b.String()
}

// Show runs one vtysh show command and decodes its JSON output into v.
func (r *Router) Show(v any, command string) error {
	out, err := exec.Command("vtysh", "--vty_socket", r.Dir, "-c", command).Output()
	if err != nil {
		return fmt.Errorf("vtysh -c %q: %w", command, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("vtysh -c %q: %w: %s", command, err, out)
	}
	return nil
}

// Neighbor is the part of `show bgp neighbors X json` callers read.
type Neighbor struct {
	BGPState               string `json:"bgpState"`
	ConnectionsEstablished int    `json:"connectionsEstablished"`
	ConnectionsDropped     int    `json:"connectionsDropped"`
	UpEpoch                int64  `json:"bgpTimerUpEstablishedEpoch"`
}

// Neighbor returns the session with addr.
func (r *Router) Neighbor(addr string) (Neighbor, error) {
	var m map[string]Neighbor
	if err := r.Show(&m, "show bgp neighbors "+addr+" json"); err != nil {
		return Neighbor{}, err
	}
	return m[addr], nil
}

// Nexthop is one next hop of a path.
type Nexthop struct {
	IP    string `json:"ip"`
	Scope string `json:"scope"`
}

// Route is one path of `show bgp ipv4|ipv6 unicast PREFIX json`.
type Route struct {
	Valid     bool `json:"valid"`
	Stale     bool `json:"stale"`
	LocPrf    int  `json:"locPrf"`
	Multipath bool `json:"multipath"`
	Community struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	Nexthops []Nexthop `json:"nexthops"`
	Peer     struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
}

// HasNexthop reports whether the path goes via ip.
func (r Route) HasNexthop(ip string) bool {
	for _, n := range r.Nexthops {
		if n.IP == ip {
			return true
		}
	}
	return false
}

// Routes returns the paths for prefix (none when there is no such route).
func (r *Router) Routes(prefix string) ([]Route, error) {
	fam := "ipv4"
	if strings.Contains(prefix, ":") {
		fam = "ipv6"
	}
	var out struct {
		Paths []Route `json:"paths"`
	}
	err := r.Show(&out, fmt.Sprintf("show bgp %s unicast %s json", fam, prefix))
	return out.Paths, err
}

// Prefixes returns the prefixes of the BGP table of family ("ipv4" or "ipv6").
func (r *Router) Prefixes(fam string) ([]string, error) {
	var out struct {
		Routes map[string]json.RawMessage `json:"routes"`
	}
	if err := r.Show(&out, "show bgp "+fam+" unicast json"); err != nil {
		return nil, err
	}
	ps := make([]string, 0, len(out.Routes))
	for p := range out.Routes {
		ps = append(ps, p)
	}
	return ps, nil
}

// BFDStatus returns the state of the BFD session with peer ("up", "down", "init"), or
// "absent".
func (r *Router) BFDStatus(peer string) (string, error) {
	var ps []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if err := r.Show(&ps, "show bfd peers json"); err != nil {
		return "", err
	}
	for _, p := range ps {
		if p.Peer == peer {
			return p.Status, nil
		}
	}
	return "absent", nil
}

// KernelNexthops returns the next hops of the kernel's route for prefix in ns (FRR installs
// its best paths there): none when there is no route, several for an ECMP route.
func KernelNexthops(ns *netns.NS, prefix string) ([]string, error) {
	fam := "-4"
	if strings.Contains(prefix, ":") {
		fam = "-6"
	}
	out, err := ns.Run("ip", fam, "-j", "route", "show", "exact", prefix)
	if err != nil {
		return nil, err
	}
	var rs []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	var gws []string
	for _, r := range rs {
		if r.Gateway != "" {
			gws = append(gws, r.Gateway)
		}
		for _, n := range r.Nexthops {
			gws = append(gws, n.Gateway)
		}
	}
	return gws, nil
}
