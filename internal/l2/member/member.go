// Package member tells which speakers are alive, fast enough for Layer 2 failover under a
// second: every speaker sends a small UDP heartbeat to every other speaker each interval, and
// declares a peer dead after a few intervals without one (BFD's idea, over a full mesh).
//
// Why not the API server: a Node turns NotReady after tens of seconds. Why not memberlist:
// its gossip and suspicion protocol targets large clusters and second-scale detection; tuned
// to 100 ms probes its suspicion timeouts misfire. A mesh of heartbeats is simple, its
// detection time is exactly interval x multiplier, and a healed partition converges as soon
// as heartbeats flow again (both sides see each other alive; the election is a pure function
// of the alive set).
package member

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrolb/ferrolb/internal/l2/recovery"
)

// Peer is another speaker: its node name and where it listens for heartbeats.
type Peer struct {
	Name string
	Addr netip.AddrPort
}

// Config configures a Tracker.
type Config struct {
	// Name is this speaker's node name.
	Name string
	// Interval between heartbeats; default 100 ms.
	Interval time.Duration
	// Multiplier is how many intervals may pass without a heartbeat before a peer is dead;
	// default 3.
	Multiplier int
	// Key, when set, signs every heartbeat sent (HMAC-SHA256), and only heartbeats signed
	// with it count, each later in its sender's run than the last one counted (epoch and
	// sequence, see message.go), so that neither a forged nor a replayed heartbeat can keep
	// a dead node alive. Without a key, heartbeats are unsigned and signed ones are ignored.
	Key []byte
	// AcceptUnsigned, with Key, also counts unsigned heartbeats, and sends an unsigned one
	// beside each signed one: for moving speakers that have no key yet (or run a version
	// without signatures) to one, without a moment in which they think each other dead.
	AcceptUnsigned bool
	// MaxSkew is how far the send time of the first signed heartbeat of a peer's run (after
	// the peer or this speaker started) may be from this speaker's clock; default 30 s. It
	// bounds how old a recording an attacker can replay to a speaker that just started.
	// Heartbeats within a run are ordered by their sequence alone: a clock that steps on
	// either side does not make a live peer look dead.
	MaxSkew time.Duration
}

// Tracker sends heartbeats to its peers and tracks which of them are alive.
type Tracker struct {
	cfg  Config
	conn net.PacketConn
	now  func() time.Time
	// wall is the wall clock, for the send time of heartbeats and the coarse check of a
	// new run's first one (now may be a fake monotonic clock in tests; this is the clock
	// that NTP steps).
	wall func() time.Time
	// epoch identifies this run of the speaker (random, never 0); seq numbers its signed
	// heartbeats.
	epoch uint64
	seq   atomic.Uint64

	mu sync.Mutex
	// down: this speaker cannot serve (no carrier on its announcing interfaces). It sends
	// no heartbeats, so its peers declare it dead and take its addresses over, and it counts
	// itself out of Alive.
	down bool
	// started is when this speaker began to send; until a detection time later it may not
	// have heard every live peer yet, so it does not count itself alive (warm): a speaker
	// that believed itself alone would claim every address. It waits warmMargin intervals
	// more, for its peers: they count it alive a detection time after its first heartbeat, on
	// their next tick, and only then stop answering for what it wins, a reconcile later.
	started time.Time
	warm    bool
	peers   map[string]netip.AddrPort
	// firstSeen is when a peer's current run of heartbeats began: a newcomer (first heard
	// after we warmed up) counts as alive only after a detection time, when it has heard
	// everyone too, so both sides switch together.
	firstSeen map[string]time.Time
	lastSeen  map[string]time.Time
	// runs is where each peer's signed heartbeats have got to: a heartbeat must be later
	// in its run to count.
	runs    map[string]*run
	alive   map[string]bool
	changed chan struct{}

	counted atomic.Uint64
	ignored [numIgnored]atomic.Uint64
	guard   recovery.Guard
}

// Why a received heartbeat did not count, for Stats.
const (
	IgnoredMalformed   = iota // not a heartbeat, or a broken one
	IgnoredSignature          // signed with another key, or altered on the way
	IgnoredNoKey              // signed, and this speaker has no key
	IgnoredUnsigned           // unsigned, and this speaker requires a signature
	IgnoredUnknownPeer        // from a node that is not a peer, or not from its address and port
	IgnoredStale              // not later in its run than the last, from an ended run, or a new run sent too far from this clock
	numIgnored
)

// IgnoredReasons names the reasons, by index, for metrics.
var IgnoredReasons = [numIgnored]string{"malformed", "signature", "no-key", "unsigned", "unknown-peer", "stale"}

// Stats are the heartbeats received since the Tracker started: counted, and ignored by
// reason (indexed by the Ignored constants).
type Stats struct {
	Counted uint64
	Ignored [numIgnored]uint64
	// Panics counts heartbeats whose handling panicked (a bug): each was dropped, and the
	// tracker went on.
	Panics uint64
}

// Stats returns the counters; a rising Ignored[IgnoredSignature] or [IgnoredNoKey] means
// speakers that do not share a key, and then see each other dead.
func (t *Tracker) Stats() Stats {
	st := Stats{Counted: t.counted.Load(), Panics: t.guard.Panics()}
	for i := range t.ignored {
		st.Ignored[i] = t.ignored[i].Load()
	}
	return st
}

// New returns a Tracker that listens on conn (a UDP socket) and sends from it.
func New(cfg Config, conn net.PacketConn) (*Tracker, error) {
	if len(cfg.Name) == 0 || len(cfg.Name) > maxNameLength {
		return nil, fmt.Errorf("node name %q: must be 1 to %d bytes", cfg.Name, maxNameLength)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Multiplier <= 0 {
		cfg.Multiplier = 3
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = 30 * time.Second
	}
	if len(cfg.Key) > 0 && len(cfg.Key) < MinKeyLength {
		return nil, fmt.Errorf("heartbeat key of %d bytes: want at least %d", len(cfg.Key), MinKeyLength)
	}
	epoch, err := newEpoch()
	if err != nil {
		return nil, err
	}
	return &Tracker{
		cfg:       cfg,
		conn:      conn,
		now:       time.Now,
		wall:      time.Now,
		epoch:     epoch,
		peers:     map[string]netip.AddrPort{},
		firstSeen: map[string]time.Time{},
		lastSeen:  map[string]time.Time{},
		runs:      map[string]*run{},
		alive:     map[string]bool{},
		changed:   make(chan struct{}, 1),
		guard:     recovery.Guard{Name: "heartbeats"},
	}, nil
}

// SetPeers replaces the set of peers (the speaker learns them from Node objects). A peer
// that is new starts dead until its first heartbeat arrives.
func (t *Tracker) SetPeers(peers []Peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := make(map[string]netip.AddrPort, len(peers))
	for _, p := range peers {
		if p.Name != t.cfg.Name {
			next[p.Name] = p.Addr
		}
	}
	for name := range t.peers {
		if _, ok := next[name]; !ok {
			delete(t.lastSeen, name)
			delete(t.firstSeen, name)
			delete(t.runs, name)
			if t.alive[name] {
				delete(t.alive, name)
				t.notify()
			}
		}
	}
	t.peers = next
}

// Alive returns the names of the live speakers, this one included unless it is down,
// sorted.
func (t *Tracker) Alive() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Collect(maps.Keys(t.alive))
	if t.warm && !t.down {
		out = append(out, t.cfg.Name)
	}
	slices.Sort(out)
	return out
}

// SetDown says whether this speaker can serve. While down it sends no heartbeats.
func (t *Tracker) SetDown(down bool) {
	t.mu.Lock()
	changed := t.down != down
	t.down = down
	if changed && !down {
		// Back up: the peers need a detection time to trust us again, and so do we, so that
		// both sides hand the addresses over at the same moment, not one before the other.
		t.started, t.warm = t.now(), false
	}
	t.mu.Unlock()
	if changed {
		t.notify()
		if !down {
			t.send() // be seen again at once, not at the next tick
		}
	}
}

// Changed is signalled (coalesced) whenever the alive set changes.
func (t *Tracker) Changed() <-chan struct{} { return t.changed }

// Run sends and receives heartbeats until ctx ends, then closes the socket. It returns after
// its receiving goroutine has exited.
func (t *Tracker) Run(ctx context.Context) error {
	recvErr := make(chan error, 1)
	go func() { recvErr <- t.receive() }()
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	t.mu.Lock()
	t.started = t.now()
	t.mu.Unlock()
	t.send()
	for {
		select {
		case <-ctx.Done():
			closeErr := t.conn.Close()
			// Closing the socket ends receive; any other error it saw is worth reporting.
			if err := <-recvErr; !errors.Is(err, net.ErrClosed) {
				return errors.Join(fmt.Errorf("receive heartbeats: %w", err), closeErr)
			}
			return closeErr
		case err := <-recvErr:
			return errors.Join(fmt.Errorf("receive heartbeats: %w", err), t.conn.Close())
		case <-tick.C:
			t.evaluate()
			t.send()
		}
	}
}

func (t *Tracker) send() {
	var msgs [][]byte
	if len(t.cfg.Key) == 0 || t.cfg.AcceptUnsigned {
		b, err := heartbeat{Name: t.cfg.Name}.marshal()
		if err != nil {
			return // New checked the name
		}
		msgs = append(msgs, b)
	}
	if len(t.cfg.Key) > 0 {
		b, err := heartbeat{Name: t.cfg.Name, Epoch: t.epoch, Seq: t.seq.Add(1), Sent: t.wall()}.marshalSigned(t.cfg.Key)
		if err != nil {
			return
		}
		msgs = append(msgs, b)
	}
	t.mu.Lock()
	if t.down {
		t.mu.Unlock()
		return
	}
	addrs := slices.Collect(maps.Values(t.peers))
	t.mu.Unlock()
	for _, a := range addrs {
		for _, b := range msgs {
			// A lost heartbeat is what the multiplier is for; an unreachable peer is dead
			// anyway.
			_, _ = t.conn.WriteTo(b, net.UDPAddrFromAddrPort(a))
		}
	}
}

func (t *Tracker) receive() error {
	buf := make([]byte, 512)
	for {
		n, from, err := t.conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		t.handle(buf[:n], from)
	}
}

// handle records a heartbeat. Only known peers, from the address and port they are known by
// (a tracker sends from the socket it listens on), count: a stray or spoofed-name packet from
// elsewhere, even another socket on the peer's host, cannot keep a dead node alive.
func (t *Tracker) handle(b []byte, from net.Addr) {
	defer t.guard.Recover() // a bug here drops the packet, not the speaker
	var h heartbeat
	signed, err := h.unmarshal(b, t.cfg.Key)
	switch {
	case errors.Is(err, ErrTag):
		t.ignored[IgnoredSignature].Add(1)
		return
	case errors.Is(err, ErrNoKey):
		t.ignored[IgnoredNoKey].Add(1)
		return
	case err != nil:
		t.ignored[IgnoredMalformed].Add(1)
		return
	case len(t.cfg.Key) > 0 && !signed && !t.cfg.AcceptUnsigned:
		t.ignored[IgnoredUnsigned].Add(1)
		return
	}
	ua, ok := from.(*net.UDPAddr)
	if !ok {
		return
	}
	src := ua.AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	t.mu.Lock()
	defer t.mu.Unlock()
	want, known := t.peers[h.Name]
	if !known || netip.AddrPortFrom(want.Addr().Unmap(), want.Port()) != src {
		t.ignored[IgnoredUnknownPeer].Add(1)
		return
	}
	if signed && !t.inOrder(h) {
		t.ignored[IgnoredStale].Add(1)
		return
	}
	t.counted.Add(1)
	now := t.now()
	t.lastSeen[h.Name] = now
	if _, ok := t.firstSeen[h.Name]; !ok {
		t.firstSeen[h.Name] = now
	}
}

// run is where a peer's signed heartbeats have got to: the epoch of its current run, the
// highest sequence counted in it, and the epochs of its earlier runs, whose heartbeats never
// count again.
type run struct {
	epoch, seq uint64
	retired    []uint64
}

// maxRetired bounds the earlier runs remembered per peer: a replay of a run older than that
// must also pass the MaxSkew check of a new run.
const maxRetired = 8

// inOrder says whether a signed heartbeat from a peer counts, and if so records it. Within
// a run, only a higher sequence counts: no clock is involved, so a peer whose clock steps
// back stays alive, and this speaker's clock jumping forward makes nobody stale. A run not
// seen before (the peer restarted, or this speaker did and remembers nothing) counts when
// its send time is within MaxSkew of this speaker's clock: a replay of heartbeats recorded
// longer ago than that is refused even by a speaker that just started. t.mu is held.
func (t *Tracker) inOrder(h heartbeat) bool {
	r, known := t.runs[h.Name]
	switch {
	case known && h.Epoch == r.epoch:
		if h.Seq <= r.seq {
			return false
		}
		r.seq = h.Seq
		return true
	case known && slices.Contains(r.retired, h.Epoch):
		return false
	case t.wall().Sub(h.Sent).Abs() > t.cfg.MaxSkew:
		return false
	}
	if !known {
		r = &run{}
		t.runs[h.Name] = r
	} else {
		r.retired = append(r.retired, r.epoch)
		if len(r.retired) > maxRetired {
			r.retired = r.retired[1:]
		}
	}
	r.epoch, r.seq = h.Epoch, h.Seq
	return true
}

// newEpoch returns a random, non-zero run identifier.
func newEpoch() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("heartbeat epoch: %w", err)
		}
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e, nil
		}
	}
}

// warmMargin is how many intervals past a detection time a starting speaker waits before it
// counts itself alive (see started). Its peers need one interval to see it alive and then a
// reconcile to withdraw what it wins. With two intervals (200 ms) the lab's fault test saw
// both nodes answer for a moment when the covering node's reconcile was slow; with five, a
// moment when neither did. Three splits the difference; the handover is timed, not
// acknowledged, so it stays a matter of margins (docs/architecture.md, "Layer 2").
const warmMargin = 3

// evaluate brings the alive set up to date: a peer is alive when heard within the detection
// time and for at least the detection time; this speaker is warm a detection time and
// warmMargin intervals after it started (see started).
func (t *Tracker) evaluate() {
	now := t.now()
	detect := t.cfg.Interval * time.Duration(t.cfg.Multiplier)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.warm && !t.started.IsZero() && !now.Before(t.started.Add(detect+warmMargin*t.cfg.Interval)) {
		t.warm = true
		t.notify()
	}
	for name := range t.peers {
		heard := now.Sub(t.lastSeen[name]) <= detect
		if !heard {
			delete(t.firstSeen, name) // a run of heartbeats starts afresh
		}
		first, ok := t.firstSeen[name]
		// A peer heard before we warmed up was running already: trust it as we warm up, or we
		// would think ourselves alone for a moment. One that appears later is a newcomer:
		// trust it a detection time after its first heartbeat, when it is warm too.
		warmAt := t.started.Add(detect)
		alive := heard && ok && (now.Sub(first) >= detect || (!t.started.IsZero() && first.Before(warmAt)))
		if alive != t.alive[name] {
			if alive {
				t.alive[name] = true
			} else {
				delete(t.alive, name)
			}
			t.notify()
		}
	}
}

func (t *Tracker) notify() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}
