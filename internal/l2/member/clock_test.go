package member_test

import (
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrolb/ferrolb/internal/l2/member"
	"github.com/ferrolb/ferrolb/internal/testrun"
)

var clockKey = []byte("0123456789abcdef0123456789abcdef")

// steppedSpeaker starts a keyed Tracker (heartbeats every 20 ms, dead after multiplier
// missed) whose wall clock is time.Now plus *offset, on addr ("127.0.0.1:0" for any port).
func steppedSpeaker(t *testing.T, name, addr string, offset *atomic.Int64, maxSkew time.Duration, multiplier int) *speaker {
	t.Helper()
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := member.New(member.Config{Name: name, Interval: 20 * time.Millisecond, Multiplier: multiplier, Key: clockKey, MaxSkew: maxSkew}, conn)
	if err != nil {
		t.Fatal(err)
	}
	member.SetWallClock(tr, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	return &speaker{
		name: name, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), tracker: tr,
		stop: testrun.Background(t, "tracker "+name, tr.Run),
	}
}

// stayAlive checks that, for 2 s (two detection times of TestClockSteps' trackers: a peer
// whose heartbeats are refused is dead after one), s goes on counting heartbeats, refuses
// none as stale, and sees want alive throughout. The detection time is 50 intervals so
// that a machine busy enough to stall the trackers for a while does not fail it.
func stayAlive(t *testing.T, s *speaker, want ...string) {
	t.Helper()
	before := s.tracker.Stats()
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got := s.tracker.Alive(); !slices.Equal(got, want) {
			t.Fatalf("%s sees %v alive, want %v", s.name, got, want)
		}
	}
	after := s.tracker.Stats()
	if n := after.Ignored[member.IgnoredStale] - before.Ignored[member.IgnoredStale]; n != 0 {
		t.Errorf("%s refused %d heartbeats as stale", s.name, n)
	}
	if after.Counted == before.Counted {
		t.Errorf("%s counted no heartbeat in 2 s", s.name)
	}
}

// TestClockSteps: heartbeats are ordered by their sender's run (epoch and sequence), not by
// anybody's clock. A node whose clock steps back an hour stays alive for its peers (before,
// its heartbeats were older than the last one seen, and it was declared dead while it still
// answered ARP); a node whose clock jumps 31 s forward still sees its peers (before, every
// heartbeat was beyond the 30 s skew, and it claimed every address).
func TestClockSteps(t *testing.T) {
	defer goleak.VerifyNone(t)
	var offA, offB atomic.Int64
	a := steppedSpeaker(t, "a", "127.0.0.1:0", &offA, 30*time.Second, 50)
	b := steppedSpeaker(t, "b", "127.0.0.1:0", &offB, 30*time.Second, 50)
	mesh(a, b)
	waitAlive(t, a, "a", "b")
	waitAlive(t, b, "a", "b")

	offA.Store(int64(-time.Hour)) // a's clock steps back
	stayAlive(t, b, "a", "b")
	stayAlive(t, a, "a", "b")

	offA.Store(0)
	offB.Store(int64(31 * time.Second)) // b's clock jumps forward
	stayAlive(t, b, "a", "b")
	stayAlive(t, a, "a", "b")
	a.stop()
	b.stop()
}

// TestReplayAcrossRestarts: a replay of recorded heartbeats does not keep a dead node alive,
// neither when the recording is of an earlier run of a node that restarted since, nor when
// the receiver itself restarted (and remembers no sequence) and the recording is older than
// MaxSkew. A node that really restarts (a new epoch) is seen again at once.
func TestReplayAcrossRestarts(t *testing.T) {
	defer goleak.VerifyNone(t)
	const skew = 300 * time.Millisecond
	var zero atomic.Int64
	a := steppedSpeaker(t, "a", "127.0.0.1:0", &zero, skew, 3)
	b := steppedSpeaker(t, "b", "127.0.0.1:0", &zero, skew, 3)
	rec, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	peers := func(a, b *speaker) {
		all := []member.Peer{{Name: "a", Addr: a.addr}, {Name: "b", Addr: b.addr}}
		b.tracker.SetPeers(all)
		a.tracker.SetPeers(append(slices.Clone(all), member.Peer{Name: "rec", Addr: rec.LocalAddr().(*net.UDPAddr).AddrPort()}))
	}
	peers(a, b)
	waitAlive(t, b, "a", "b")
	replay := func(to *speaker, msgs [][]byte) {
		t.Helper()
		c, err := net.ListenPacket("udp", a.addr.String()) // from a's own address and port
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, m := range msgs {
			if _, err := c.WriteTo(m, net.UDPAddrFromAddrPort(to.addr)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first := record(t, rec, 10)

	// a restarts on the same address: a new run, seen at once.
	a.stop()
	a = steppedSpeaker(t, "a", a.addr.String(), &zero, skew, 3)
	peers(a, b)
	waitAlive(t, b, "a", "b")
	// Its first run's heartbeats, replayed within MaxSkew of their sending, are refused:
	// that run is over.
	stale := b.tracker.Stats().Ignored[member.IgnoredStale]
	a.stop()
	replay(b, first)
	if got := b.tracker.Stats().Ignored[member.IgnoredStale] - stale; got != uint64(len(first)) {
		t.Errorf("b refused %d of %d replayed heartbeats of a's earlier run as stale", got, len(first))
	}
	waitAlive(t, b, "b")

	// b restarts and remembers no sequence: a recording older than MaxSkew is refused.
	a = steppedSpeaker(t, "a", a.addr.String(), &zero, skew, 3)
	peers(a, b)
	waitAlive(t, b, "a", "b")
	second := record(t, rec, 10)
	a.stop()
	b.stop()
	b = steppedSpeaker(t, "b", b.addr.String(), &zero, skew, 3)
	b.tracker.SetPeers([]member.Peer{{Name: "a", Addr: a.addr}, {Name: "b", Addr: b.addr}})
	time.Sleep(2 * skew)
	replay(b, second)
	if st := b.tracker.Stats(); st.Counted != 0 || st.Ignored[member.IgnoredStale] != uint64(len(second)) {
		t.Errorf("restarted b counted %d replayed heartbeats (%d refused as stale), want 0 counted", st.Counted, st.Ignored[member.IgnoredStale])
	}
	if got := b.tracker.Alive(); slices.Contains(got, "a") {
		t.Errorf("restarted b sees a alive from a replay: %v", got)
	}
	b.stop()
}
