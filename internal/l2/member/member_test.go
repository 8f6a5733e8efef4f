package member_test

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrolb/ferrolb/internal/l2/member"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

// speaker is one Tracker on loopback, running until stopped.
type speaker struct {
	name    string
	addr    netip.AddrPort
	tracker *member.Tracker
	stop    func()
}

func start(t *testing.T, name string) *speaker {
	t.Helper()
	return startWith(t, name, 20*time.Millisecond)
}

func startWith(t *testing.T, name string, interval time.Duration) *speaker {
	t.Helper()
	return startConfig(t, member.Config{Name: name, Interval: interval, Multiplier: 3})
}

func startConfig(t *testing.T, cfg member.Config) *speaker {
	t.Helper()
	name := cfg.Name
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := member.New(cfg, conn)
	if err != nil {
		t.Fatal(err)
	}
	return &speaker{
		name: name, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), tracker: tr,
		stop: testrun.Background(t, "tracker "+name, tr.Run),
	}
}

func mesh(speakers ...*speaker) {
	var peers []member.Peer
	for _, s := range speakers {
		peers = append(peers, member.Peer{Name: s.name, Addr: s.addr})
	}
	for _, s := range speakers {
		s.tracker.SetPeers(peers)
	}
}

// waitAlive waits until s sees exactly want alive; it fails after a generous 5 s (detection
// itself takes interval x multiplier = 60 ms; this is no timing assertion).
func waitAlive(t *testing.T, s *speaker, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.After(5 * time.Second)
	for {
		if got := s.tracker.Alive(); slices.Equal(got, want) {
			return
		}
		select {
		case <-s.tracker.Changed():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s sees %v alive, want %v", s.name, s.tracker.Alive(), want)
		}
	}
}

func TestTracker(t *testing.T) {
	defer goleak.VerifyNone(t)
	a, b, c := start(t, "a"), start(t, "b"), start(t, "c")
	mesh(a, b, c)
	for _, s := range []*speaker{a, b, c} {
		waitAlive(t, s, "a", "b", "c")
	}

	// c dies: a and b see it dead.
	c.stop()
	waitAlive(t, a, "a", "b")
	waitAlive(t, b, "a", "b")

	// A packet naming c from an address that is not c's does not bring c back.
	stray, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stray.Close()
	hb := append([]byte("FLB\x01\x01\x01"), 'c')
	for range 10 {
		if _, err := stray.WriteTo(hb, net.UDPAddrFromAddrPort(a.addr)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := a.tracker.Alive(); slices.Contains(got, "c") {
		t.Errorf("a sees c alive from a stray packet: %v", got)
	}

	// c comes back on a new address: once the peers learn it, all see each other again.
	c2 := start(t, "c")
	mesh(a, b, c2)
	for _, s := range []*speaker{a, b, c2} {
		waitAlive(t, s, "a", "b", "c")
	}

	// A speaker that goes down stops heartbeating: its peers declare it dead, and it counts
	// itself out at once. Up again, it is seen again.
	b.tracker.SetDown(true)
	if got := b.tracker.Alive(); slices.Contains(got, "b") {
		t.Errorf("b counts itself alive while down: %v", got)
	}
	waitAlive(t, a, "a", "c")
	b.tracker.SetDown(false)
	waitAlive(t, a, "a", "b", "c")

	// A peer removed from the set is forgotten at once.
	mesh(a, b)
	waitAlive(t, a, "a", "b")
	for _, s := range []*speaker{a, b, c2} {
		s.stop()
	}
}

func TestNewRejectsBadName(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := member.New(member.Config{}, conn); err == nil {
		t.Error("New accepted an empty node name")
	}
}

// TestWarmup: a speaker that has just started has not heard its peers yet, and must not act
// as if it were alone (it would claim every address); a peer just heard from is not trusted
// until it too has had time to hear everyone. Both become alive after a detection time.
func TestWarmup(t *testing.T) {
	defer goleak.VerifyNone(t)
	// 200 ms x 3: the "not yet" checks below hold for 600 ms, far beyond scheduling noise.
	a := startWith(t, "a", 200*time.Millisecond)
	b := startWith(t, "b", 200*time.Millisecond)
	mesh(a, b)
	if got := a.tracker.Alive(); len(got) != 0 {
		t.Errorf("a just started and sees %v alive, want nobody (not even itself)", got)
	}
	waitAlive(t, a, "a", "b")
	waitAlive(t, b, "a", "b")
	for _, s := range []*speaker{a, b} {
		s.stop()
	}
}

// TestSignedHeartbeats: speakers that share a key see each other; one with another key, or
// with none, is not seen by them (nor sees them); a recorded heartbeat replayed from a dead
// speaker's own address does not bring it back; and with AcceptUnsigned a keyed speaker and
// one without a key see each other, as during a key's rollout.
func TestSignedHeartbeats(t *testing.T) {
	defer goleak.VerifyNone(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("another key, also 32 bytes long.")
	keyed := func(name string, k []byte, acceptUnsigned bool) *speaker {
		return startConfig(t, member.Config{Name: name, Interval: 20 * time.Millisecond, Multiplier: 3, Key: k, AcceptUnsigned: acceptUnsigned})
	}
	a, b := keyed("a", key, false), keyed("b", key, false)
	c, d := keyed("c", other, false), start(t, "d")
	// A recorder listed as one of a's peers gets a copy of everything a sends.
	rec, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	all := []member.Peer{{Name: "a", Addr: a.addr}, {Name: "b", Addr: b.addr}, {Name: "c", Addr: c.addr}, {Name: "d", Addr: d.addr}}
	for _, s := range []*speaker{b, c, d} {
		s.tracker.SetPeers(all)
	}
	a.tracker.SetPeers(append(slices.Clone(all), member.Peer{Name: "rec", Addr: rec.LocalAddr().(*net.UDPAddr).AddrPort()}))
	waitAlive(t, a, "a", "b")
	waitAlive(t, b, "a", "b")
	waitAlive(t, c, "c")
	waitAlive(t, d, "d")

	// Record a's heartbeats, then stop it: b sees it dead.
	recorded := record(t, rec, 5)
	a.stop()
	waitAlive(t, b, "b")
	// Replayed from a's own address and port, its recorded heartbeats do not count.
	replay, err := net.ListenPacket("udp", a.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer replay.Close()
	for range 5 {
		for _, m := range recorded {
			if _, err := replay.WriteTo(m, net.UDPAddrFromAddrPort(b.addr)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := b.tracker.Alive(); slices.Contains(got, "a") {
		t.Errorf("b sees a alive from replayed heartbeats: %v", got)
	}
	// Each refusal is counted under its reason, for the metrics.
	for _, c := range []struct {
		s      *speaker
		reason int
	}{{b, member.IgnoredStale}, {b, member.IgnoredSignature}, {b, member.IgnoredUnsigned}, {c, member.IgnoredSignature}, {d, member.IgnoredNoKey}} {
		if st := c.s.tracker.Stats(); st.Ignored[c.reason] == 0 {
			t.Errorf("%s: %+v, want some ignored as %s", c.s.name, st, member.IgnoredReasons[c.reason])
		}
	}
	if st := b.tracker.Stats(); st.Counted == 0 {
		t.Errorf("b counted no heartbeat: %+v", st)
	}

	// Rolling a key out: e has it and accepts unsigned heartbeats, f has none yet.
	e, f := keyed("e", key, true), start(t, "f")
	mesh(e, f)
	waitAlive(t, e, "e", "f")
	waitAlive(t, f, "e", "f")
	for _, s := range []*speaker{b, c, d, e, f} {
		s.stop()
	}
}

// record returns the next n packets that reach rec (a peer's heartbeats copied to it).
func record(t *testing.T, rec net.PacketConn, n int) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 512)
	for len(out) < n {
		_ = rec.SetReadDeadline(time.Now().Add(5 * time.Second))
		m, _, err := rec.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, slices.Clone(buf[:m]))
	}
	return out
}

func TestNewRejectsShortKey(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := member.New(member.Config{Name: "a", Key: []byte("short")}, conn); err == nil {
		t.Error("New accepted a 5-byte key")
	}
}

// TestRejoinHandsOverFirst: a speaker that starts again (or gets its carrier back) counts
// itself alive, and so starts answering for the addresses it wins, only after its running
// peers count it alive, and so stop answering for them. Before, it counted itself alive a
// detection time after it started, and a peer a detection time after its first heartbeat,
// on the peer's next tick: up to an interval later, while both answered (seen in the lab as
// two nodes answering ARP when a restarted speaker came back).
func TestRejoinHandsOverFirst(t *testing.T) {
	defer goleak.VerifyNone(t)
	for range 5 {
		a := start(t, "a")
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers := []member.Peer{{Name: "a", Addr: a.addr}, {Name: "b", Addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}}
		a.tracker.SetPeers(peers) // a knows b (from its Node) and sees it dead
		waitAlive(t, a, "a")
		b, err := member.New(member.Config{Name: "b", Interval: 20 * time.Millisecond, Multiplier: 3}, conn)
		if err != nil {
			t.Fatal(err)
		}
		b.SetPeers(peers)
		began := time.Now()
		stopB := testrun.Background(t, "tracker b", b.Run)
		var aCounts, bCounts time.Duration
		for aCounts == 0 || bCounts == 0 {
			if aCounts == 0 && slices.Contains(a.tracker.Alive(), "b") {
				aCounts = time.Since(began)
			}
			if bCounts == 0 && slices.Contains(b.Alive(), "b") {
				bCounts = time.Since(began)
			}
			if time.Since(began) > 5*time.Second {
				t.Fatalf("after 5 s: a counts b alive after %v, b itself after %v", aCounts, bCounts)
			}
			time.Sleep(time.Millisecond)
		}
		if bCounts < aCounts {
			t.Errorf("b counted itself alive %v after it started, before a counted it (%v)", bCounts, aCounts)
		}
		stopB()
		a.stop()
	}
}
