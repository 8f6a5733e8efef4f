package ndp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/ndp"

	"github.com/ferrolb/ferrolb/internal/testrun"
)

// fakeConn stands in for the sockets: frames pushed into in are read, writes are recorded.
type fakeConn struct {
	in      chan []byte
	done    chan struct{}
	once    sync.Once
	wrote   chan struct{} // one token per write
	joinErr error

	mu      sync.Mutex
	writes  []sent
	joins   []netip.Addr
	leaves  []netip.Addr
	nClosed int
}

// sent is one frame written, decoded.
type sent struct {
	dstMAC   string
	src, dst netip.Addr
	na       *ndp.NeighborAdvertisement
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte), done: make(chan struct{}), wrote: make(chan struct{}, 100)}
}

func (f *fakeConn) readFrame(b []byte) (int, error) {
	select {
	case fr := <-f.in:
		return copy(b, fr), nil
	case <-f.done:
		return 0, net.ErrClosed
	}
}

func (f *fakeConn) writeFrame(b []byte, dst net.HardwareAddr) error {
	ip := b[ethHeaderLen:]
	m, err := ndp.ParseMessage(ip[ipv6HeaderLen:])
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.writes = append(f.writes, sent{
		dstMAC: dst.String(),
		src:    netip.AddrFrom16([16]byte(ip[8:24])),
		dst:    netip.AddrFrom16([16]byte(ip[24:40])),
		na:     m.(*ndp.NeighborAdvertisement),
	})
	f.mu.Unlock()
	f.wrote <- struct{}{}
	return nil
}

func (f *fakeConn) joinGroup(g netip.Addr) error {
	if f.joinErr != nil {
		return f.joinErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joins = append(f.joins, g)
	return nil
}

func (f *fakeConn) leaveGroup(g netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaves = append(f.leaves, g)
	return nil
}

func (f *fakeConn) close() error {
	f.mu.Lock()
	f.nClosed++
	f.mu.Unlock()
	f.once.Do(func() { close(f.done) })
	return nil
}

func (f *fakeConn) sent() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.writes...)
}

func (f *fakeConn) waitWrites(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-f.wrote:
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out waiting for write; have %d", len(f.sent()))
		}
	}
}

var fakeIfi = &net.Interface{Index: 7, Name: "fake0", MTU: 1500, HardwareAddr: ownMAC}

// start runs r until the test ends and checks that Run returns nil and closes the conn.
func start(t *testing.T, r *Responder, f *fakeConn) {
	t.Helper()
	// Registered first, so it runs after Run has returned.
	t.Cleanup(func() {
		if f.nClosed == 0 {
			t.Error("Run did not close the conn")
		}
	})
	testrun.Background(t, "Run", r.Run)
}

func unsolicitedTo(addr netip.Addr) sent {
	return sent{dstMAC: allNodesMAC.String(), src: addr, dst: allNodes, na: advertisement(addr, false, ownMAC)}
}

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestAnnounceBeforeRunSendsUnsolicitedBurst(t *testing.T) {
	f := newFakeConn()
	r := newResponder(fakeIfi, f)
	r.schedule = []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond}
	if err := r.Announce(vip); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{vipSNM}, f.joins, cmpAddr); diff != "" {
		t.Errorf("joins (-want +got):\n%s", diff)
	}
	if len(f.sent()) != 0 {
		t.Fatal("sent before Run")
	}
	start(t, r, f)
	f.waitWrites(t, 3)
	want := []sent{unsolicitedTo(vip), unsolicitedTo(vip), unsolicitedTo(vip)}
	if diff := cmp.Diff(want, f.sent(), cmp.AllowUnexported(sent{}), cmpAddr); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	// The counter moves just after the write the fake conn records: give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for r.Stats() != (Stats{Unsolicited: 3}) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := r.Stats(); got != (Stats{Unsolicited: 3}) {
		t.Errorf("Stats = %+v", got)
	}
}

// TestSendDueSchedule drives the announcer with a synthetic clock: the burst follows the
// schedule, and Withdraw cancels what is left of it.
func TestSendDueSchedule(t *testing.T) {
	f := newFakeConn()
	r := newResponder(fakeIfi, f)
	other := netip.MustParseAddr("2001:db8::200")
	t0 := time.Unix(1000, 0)
	if err := r.Announce(vip); err != nil {
		t.Fatal(err)
	}
	step := func(now time.Time, wantSent int, wantWait time.Duration, wantPending bool) {
		t.Helper()
		wait, pending := r.sendDue(now)
		if got := len(f.sent()); got != wantSent || wait != wantWait || pending != wantPending {
			t.Fatalf("at %v: sent %d, next in %v (%v); want %d, %v (%v)",
				now.Sub(t0), got, wait, pending, wantSent, wantWait, wantPending)
		}
	}
	step(t0, 1, time.Second, true)
	step(t0.Add(500*time.Millisecond), 1, 500*time.Millisecond, true)
	if err := r.Announce(other); err != nil {
		t.Fatal(err)
	}
	step(t0.Add(500*time.Millisecond), 2, 500*time.Millisecond, true) // other's first; vip due in 0.5 s
	step(t0.Add(time.Second), 3, 500*time.Millisecond, true)          // vip's second; other's in 0.5 s
	if err := r.Withdraw(other); err != nil {
		t.Fatal(err)
	}
	step(t0.Add(1500*time.Millisecond), 3, 500*time.Millisecond, true) // other cancelled
	step(t0.Add(2*time.Second), 4, 0, false)                           // vip's third and last
	step(t0.Add(10*time.Second), 4, 0, false)
	for i, s := range f.sent() {
		if s.src == other && i != 1 {
			t.Errorf("write %d for withdrawn %s", i, other)
		}
	}
	// Re-announcing an announced address does not restart its burst.
	if err := r.Announce(vip); err != nil {
		t.Fatal(err)
	}
	step(t0.Add(11*time.Second), 4, 0, false)
}

func TestAnswersOnlyAnnounced(t *testing.T) {
	f := newFakeConn()
	r := newResponder(fakeIfi, f)
	r.schedule = nil // no unsolicited advertisements: every write is an answer
	start(t, r, f)
	feed := func(b []byte) {
		select {
		case f.in <- b:
		case <-time.After(5 * time.Second):
			t.Fatal("reader not reading")
		}
	}

	feed(nsPkt(vip).bytes(t)) // not announced yet
	// The reader takes a frame only after handling the one before: once this one is accepted,
	// the first was decided while vip was not announced.
	feed(nsPkt(netip.MustParseAddr("2001:db8::200")).bytes(t))
	if err := r.Announce(vip); err != nil {
		t.Fatal(err)
	}
	feed(nsPkt(vip).bytes(t))
	f.waitWrites(t, 1)
	want := []sent{{dstMAC: clientMAC.String(), src: vip, dst: client, na: advertisement(vip, true, ownMAC)}}
	if diff := cmp.Diff(want, f.sent(), cmp.AllowUnexported(sent{}), cmpAddr); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
	hop := nsPkt(vip)
	hop.hop = 64
	feed(hop.bytes(t))
	if err := r.Withdraw(vip); err != nil {
		t.Fatal(err)
	}
	feed(nsPkt(vip).bytes(t))
	// One more frame, so the previous one has surely been handled when it is accepted.
	feed(nsPkt(vip).bytes(t))
	if got := len(f.sent()); got != 1 {
		t.Errorf("%d writes, want 1 (nothing before Announce or after Withdraw)", got)
	}
	st := r.Stats()
	// The last frame may still be in handle; count what is certain.
	if st.Answered != 1 || st.Ignored < 4 || st.NotAnnounced < 3 || st.SendErrors != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestGroupsAreShared(t *testing.T) {
	f := newFakeConn()
	r := newResponder(fakeIfi, f)
	a := netip.MustParseAddr("2001:db8::100")
	b := netip.MustParseAddr("2001:db8:1::100") // same low 24 bits, same group
	c := netip.MustParseAddr("2001:db8::200")
	for _, x := range []netip.Addr{a, b, c, a} {
		if err := r.Announce(x); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]netip.Addr{vipSNM, mustSNM(c)}, f.joins, cmpAddr); diff != "" {
		t.Errorf("joins (-want +got):\n%s", diff)
	}
	for _, x := range []netip.Addr{a, a, c} {
		if err := r.Withdraw(x); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]netip.Addr{mustSNM(c)}, f.leaves, cmpAddr); diff != "" {
		t.Errorf("leaves after withdrawing a and c (-want +got):\n%s", diff)
	}
	if err := r.Withdraw(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]netip.Addr{mustSNM(c), vipSNM}, f.leaves, cmpAddr); diff != "" {
		t.Errorf("leaves after withdrawing b (-want +got):\n%s", diff)
	}
}

func TestAnnounceErrors(t *testing.T) {
	f := newFakeConn()
	r := newResponder(fakeIfi, f)
	for _, s := range []string{"192.0.2.10", "::ffff:192.0.2.10", "ff02::1"} {
		if err := r.Announce(netip.MustParseAddr(s)); err == nil {
			t.Errorf("Announce(%s) accepted", s)
		}
		if err := r.Withdraw(netip.MustParseAddr(s)); err == nil {
			t.Errorf("Withdraw(%s) accepted", s)
		}
	}
	f.joinErr = errors.New("no such device")
	if err := r.Announce(vip); err == nil {
		t.Error("Announce succeeded although joining the group failed")
	}
	f.joinErr = nil
	if err := r.Announce(vip); err != nil {
		t.Fatalf("Announce after a failed one: %v", err)
	}
	if len(f.joins) != 1 {
		t.Errorf("joins %v, want one", f.joins)
	}
}

func TestRunLifecycle(t *testing.T) {
	f := newFakeConn()
	r := newResponder(fakeIfi, f)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f.nClosed != 1 {
		t.Errorf("conn closed %d times, want 1", f.nClosed)
	}
	if err := r.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
	if err := r.Announce(vip); !errors.Is(err, ErrClosed) {
		t.Errorf("Announce after Run: %v, want ErrClosed", err)
	}
	if err := r.Withdraw(vip); err != nil {
		t.Errorf("Withdraw after Run: %v", err)
	}
}

// errConn fails every read, as a socket whose interface vanished might.
type errConn struct{ *fakeConn }

func (*errConn) readFrame([]byte) (int, error) { return 0, errors.New("boom") }

func TestRunReturnsReadError(t *testing.T) {
	c := &errConn{newFakeConn()}
	r := newResponder(fakeIfi, c)
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run returned nil after a read error")
	}
	if c.nClosed != 1 {
		t.Errorf("conn closed %d times, want 1", c.nClosed)
	}
}
