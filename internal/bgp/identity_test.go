package bgp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrolb/ferrolb/internal/testrun"
)

// session is what FRR says of its session with the node, identity included.
type session struct {
	BGPState               string `json:"bgpState"`
	RemoteRouterID         string `json:"remoteRouterId"`
	RemoteAS               uint32 `json:"remoteAs"`
	ConnectionsEstablished int    `json:"connectionsEstablished"`
	GracefulRestart        struct {
		// RBit is the restart state bit the node sent: it says it restarted.
		RBit bool `json:"rBit"`
	} `json:"gracefulRestartInfo"`
}

func sessionWith(f *frr, addr string) (session, error) {
	var m map[string]session
	err := f.Show(&m, "show bgp neighbors "+addr+" json")
	return m[addr], err
}

// fromNode is FRR's path for prefix learnt from the node's IPv4 session, with the router ID
// of the session it came over.
type fromNode struct {
	Valid, Stale bool
	RouterID     string
}

func pathFromNode(f *frr, prefix string) (fromNode, bool, error) {
	var out struct {
		Paths []struct {
			Valid bool `json:"valid"`
			Stale bool `json:"stale"`
			Peer  struct {
				PeerID   string `json:"peerId"`
				RouterID string `json:"routerId"`
			} `json:"peer"`
		} `json:"paths"`
	}
	if err := f.Show(&out, "show bgp ipv4 unicast "+prefix+" json"); err != nil {
		return fromNode{}, false, err
	}
	for _, p := range out.Paths {
		if p.Peer.PeerID == nodeV4 {
			return fromNode{Valid: p.Valid, Stale: p.Stale, RouterID: p.Peer.RouterID}, true, nil
		}
	}
	return fromNode{}, false, nil
}

// A new router ID, then a new AS, each replace the server while the session is
// established: FRR sees a new session from the new identity, announcing a restart (the R
// bit, as any starting speaker), and the route comes back over it, fresh.
func TestIdentityChange(t *testing.T) {
	t.Parallel()
	const vip = "198.51.100.20/32"
	// remote-as external: FRR takes the node in whatever AS other than its own.
	f, sp, _, _ := labConf(t, frrConfWith(map[string][]string{nodeV4: {"remote-as external"}}, "bgp graceful-restart"))
	peer := routerPeer(routerV4)
	peer.GracefulRestart = 60 * time.Second
	sp.Apply(nodeIdentity, []Peer{peer}, []Path{{Prefix: netip.MustParsePrefix(vip)}})

	newID := netip.MustParseAddr("192.0.2.99") // any IPv4 address: it need not be the node's
	for _, id := range []Identity{nodeIdentity, {RouterID: newID, ASN: nodeASN}, {RouterID: newID, ASN: 64514}} {
		before, err := sessionWith(f, nodeV4)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		sp.SetIdentity(id)
		var now session
		f.waitFor(fmt.Sprintf("session from %+v", id), func() (bool, string) {
			now, err = sessionWith(f, nodeV4)
			return err == nil && now.BGPState == "Established" && now.RemoteRouterID == id.RouterID.String() &&
				now.RemoteAS == id.ASN && now.GracefulRestart.RBit, fmt.Sprintf("%+v %v", now, err)
		})
		f.waitFor(fmt.Sprintf("%s over the session from %+v", vip, id), func() (bool, string) {
			r, ok, err := pathFromNode(f, vip)
			return err == nil && ok && r.Valid && !r.Stale && r.RouterID == id.RouterID.String(), fmt.Sprintf("%+v %v %v", r, ok, err)
		})
		f.waitFor("speaker reports the session established", func() (bool, string) {
			st := sp.PeerStates()
			return len(st) == 1 && st[0].Established(), fmt.Sprintf("%+v", st)
		})
		if id == nodeIdentity {
			continue // the first session
		}
		t.Logf("%+v: session and route back %v after Apply", id, time.Since(start))
		if now.ConnectionsEstablished <= before.ConnectionsEstablished {
			t.Errorf("%+v: FRR counts %d connections, as before: the session was not replaced", id, now.ConnectionsEstablished)
		}
	}
}

// Without peers no server runs (and the identity may be the zero one); with peers again a
// server starts, with the paths.
func TestPeersRemovedAndAdded(t *testing.T) {
	t.Parallel()
	const vip = "198.51.100.21/32"
	f, sp := lab(t, "")
	paths := []Path{{Prefix: netip.MustParsePrefix(vip)}}
	sp.Apply(nodeIdentity, []Peer{routerPeer(routerV4)}, paths)
	f.waitEstablished(nodeV4)
	waitPrefixes(f, vip)
	if sp.Servers() == "" {
		t.Fatal("no GoBGP goroutine while a server runs: the check below would prove nothing")
	}

	start := time.Now()
	sp.Apply(Identity{}, nil, paths)
	if st := sp.PeerStates(); len(st) != 0 {
		t.Errorf("PeerStates without peers = %+v, want none", st)
	}
	f.waitFor("session down", func() (bool, string) {
		n, err := f.Neighbor(nodeV4)
		return err == nil && n.BGPState != "Established", fmt.Sprintf("%+v %v", n, err)
	})
	waitPrefixes(f)
	t.Logf("session down and route withdrawn %v after Apply without peers", time.Since(start))
	f.waitFor("server stopped", func() (bool, string) {
		s := sp.Servers()
		return s == "", s
	})

	sp.Apply(nodeIdentity, []Peer{routerPeer(routerV4)}, paths)
	f.waitEstablished(nodeV4)
	waitPrefixes(f, vip)
	f.waitFor("speaker reports the session established", func() (bool, string) {
		st := sp.PeerStates()
		return len(st) == 1 && st[0].Established(), fmt.Sprintf("%+v", st)
	})
}

// Apply before Run: nothing runs until Run, the peer is reported Idle meanwhile, and the
// first session carries the path.
func TestApplyBeforeRun(t *testing.T) {
	t.Parallel()
	const vip = "198.51.100.22/32"
	f, _, node := labNamespaces(t, frrConf(""))
	sp := newRemoteSpeaker(t, node)
	sp.Apply(nodeIdentity, []Peer{routerPeer(routerV4)}, []Path{{Prefix: netip.MustParsePrefix(vip)}})
	if st := sp.PeerStates(); len(st) != 1 || st[0].Address != netip.MustParseAddr(routerV4) || st[0].State != StateIdle {
		t.Errorf("PeerStates before Run = %+v, want %s Idle", st, routerV4)
	}
	if s := sp.Servers(); s != "" {
		t.Errorf("a server runs before Run: %s", s)
	}

	sp.Run()
	f.waitEstablished(nodeV4)
	waitPrefixes(f, vip)
}

// When Run's context ends, Run closes the session at once (Cease: FRR does not wait for
// the hold time) and returns with every goroutine it started gone.
func TestRunExit(t *testing.T) {
	t.Parallel()
	f, sp := lab(t, "")
	peer := routerPeer(routerV4)
	peer.BFD = fastBFD // BFD runs goroutines of its own
	sp.Apply(nodeIdentity, []Peer{peer}, []Path{{Prefix: netip.MustParsePrefix("198.51.100.23/32")}})
	f.waitEstablished(nodeV4)
	waitPrefixes(f, "198.51.100.23/32")

	start := time.Now()
	sp.Stop() // fails unless Run returns and leaves no goroutine
	f.waitFor("session down", func() (bool, string) {
		n, err := f.Neighbor(nodeV4)
		return err == nil && n.BGPState != "Established", fmt.Sprintf("%+v %v", n, err)
	})
	took := time.Since(start)
	t.Logf("Run returned and the session is down %v after its context ended", took)
	if took > 3*time.Second { // the hold time is 9 s
		t.Errorf("session down %v after Run's context ended: no Cease", took)
	}
}

// In the test process, without a namespace: no peers, so no server and no socket. Apply
// checks the identity only when there are peers; Run runs no server without peers, and
// returns leaving nothing behind.
func TestRunWithoutPeers(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	sp, err := New(Config{ListenPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	paths := []Path{{Prefix: netip.MustParsePrefix("198.51.100.24/32")}}
	peer := routerPeer(routerV4)
	if err := sp.Apply(Identity{}, nil, paths); err != nil {
		t.Errorf("Apply without peers and without an identity: %v", err)
	}
	for _, id := range []Identity{{}, {RouterID: netip.MustParseAddr(nodeV6), ASN: nodeASN}, {RouterID: netip.MustParseAddr(nodeV4)}} {
		if err := sp.Apply(id, []Peer{peer}, paths); err == nil {
			t.Errorf("Apply with peers and identity %+v: no error", id)
		}
	}
	if st, err := sp.PeerStates(); err != nil || len(st) != 0 {
		t.Errorf("PeerStates after refused Applies = %+v %v, want none", st, err)
	}

	stop := testrun.Background(t, "speaker", sp.Run)
	if err := sp.Apply(nodeIdentity, nil, paths); err != nil {
		t.Fatal(err)
	}
	// Find retries until only Run's goroutine, waiting, is left (or fails): a server,
	// even without peers or sockets, has goroutines.
	if err := goleak.Find(ignore, goleak.IgnoreTopFunction(runTop)); err != nil {
		t.Errorf("without peers: %v", err)
	}
	stop()
	goleak.VerifyNone(t, ignore)
	if err := sp.Run(t.Context()); err == nil {
		t.Error("second Run: no error")
	}
}
