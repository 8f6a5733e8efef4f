package bgp

import (
	"encoding/json"
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

const (
	frrBin      = "/usr/lib/frr"
	waitTimeout = 30 * time.Second
)

// frr is a zebra and a bgpd started for one test inside a namespace, with a run directory
// of their own, so tests neither share state nor need systemd.
type frr struct {
	t   *testing.T
	dir string
}

// bfddConf is the BFD profile the tests' FRR offers: "fast" is 100 ms x 3.
const bfddConf = "hostname router\nlog stdout\n!\nbfd\n profile fast\n  transmit-interval 100\n  receive-interval 100\n  detect-multiplier 3\n !\n!\n"

// startFRR writes conf and starts zebra (bgpd needs it to resolve next hops; without it
// every route is invalid), bfdd and bgpd in ns. They are killed when the test ends.
func startFRR(t *testing.T, ns *netns.NS, conf string) *frr {
	t.Helper()
	for _, d := range []string{"zebra", "bfdd", "bgpd"} {
		if _, err := os.Stat(filepath.Join(frrBin, d)); err != nil {
			t.Skipf("FRR not installed: %v", err)
		}
	}
	u, err := user.Lookup("frr")
	if err != nil {
		t.Skipf("FRR user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Not t.TempDir: its parent is mode 0700, which the frr user cannot traverse.
	dir, err := os.MkdirTemp("", "ferrolb-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	// bgpd gets conf; zebra a config of its own, as it rejects every bgp line.
	for name, text := range map[string]string{"bgpd": conf, "zebra": "hostname router\nlog stdout\n", "bfdd": bfddConf} {
		if err := os.WriteFile(filepath.Join(dir, name+".conf"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := &frr{t: t, dir: dir}
	for _, d := range []string{"zebra", "bfdd", "bgpd"} {
		args := []string{
			"-f", filepath.Join(dir, d+".conf"), "-i", filepath.Join(dir, d+".pid"),
			"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir,
		}
		switch d {
		case "bgpd":
			args = append(args, "-p", "179")
		case "bfdd":
			// Its control socket defaults to one path for the whole machine.
			args = append(args, "--bfdctl", filepath.Join(dir, "bfdd.sock"))
		}
		cmd := ns.Command(filepath.Join(frrBin, d), args...)
		logf, err := os.Create(filepath.Join(dir, d+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
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
			_ = logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log:\n%s", d, b)
			}
		})
		// Wait for the daemon's vty socket: vtysh needs it, and zebra's zserv socket must
		// exist before bgpd starts or bgpd waits its retry interval.
		sock := filepath.Join(dir, d+".vty")
		f.waitFor(d+" vty socket", func() (bool, string) {
			_, err := os.Stat(sock)
			return err == nil, fmt.Sprint(err)
		})
	}
	return f
}

// vtysh runs one show command and decodes its JSON output into v.
func (f *frr) vtysh(v any, command string) error {
	out, err := exec.Command("vtysh", "--vty_socket", f.dir, "-c", command).Output()
	if err != nil {
		return fmt.Errorf("vtysh -c %q: %w", command, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("vtysh -c %q: %w: %s", command, err, out)
	}
	return nil
}

// waitFor polls cond until it holds, failing the test after waitTimeout with cond's last
// explanation.
func (f *frr) waitFor(what string, cond func() (bool, string)) {
	f.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not after %v: %s", what, waitTimeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// neighbor is the part of FRR's `show bgp neighbors X json` the tests read.
type neighbor struct {
	BGPState               string `json:"bgpState"`
	ConnectionsEstablished int    `json:"connectionsEstablished"`
	ConnectionsDropped     int    `json:"connectionsDropped"`
	UpEpoch                int64  `json:"bgpTimerUpEstablishedEpoch"`
}

func (f *frr) neighbor(addr string) (neighbor, error) {
	var m map[string]neighbor
	if err := f.vtysh(&m, "show bgp neighbors "+addr+" json"); err != nil {
		return neighbor{}, err
	}
	return m[addr], nil
}

func (f *frr) waitEstablished(addr string) neighbor {
	f.t.Helper()
	var n neighbor
	f.waitFor("session with "+addr+" established", func() (bool, string) {
		var err error
		n, err = f.neighbor(addr)
		return err == nil && n.BGPState == "Established", fmt.Sprintf("%+v %v", n, err)
	})
	return n
}

// route is one path of FRR's `show bgp ipv4|ipv6 unicast PREFIX json`.
type route struct {
	Valid     bool `json:"valid"`
	Stale     bool `json:"stale"`
	LocPrf    int  `json:"locPrf"`
	Community struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	Nexthops []struct {
		IP    string `json:"ip"`
		Scope string `json:"scope"`
	} `json:"nexthops"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
}

// routes returns FRR's paths for prefix (none when it has no such route).
func (f *frr) routes(prefix string) ([]route, error) {
	fam := "ipv4"
	if strings.Contains(prefix, ":") {
		fam = "ipv6"
	}
	var r struct {
		Paths []route `json:"paths"`
	}
	err := f.vtysh(&r, fmt.Sprintf("show bgp %s unicast %s json", fam, prefix))
	return r.Paths, err
}

// prefixes returns the prefixes of FRR's table for family ("ipv4" or "ipv6").
func (f *frr) prefixes(fam string) ([]string, error) {
	var r struct {
		Routes map[string]json.RawMessage `json:"routes"`
	}
	if err := f.vtysh(&r, "show bgp "+fam+" unicast json"); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(r.Routes))
	for p := range r.Routes {
		out = append(out, p)
	}
	return out, nil
}
