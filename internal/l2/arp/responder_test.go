package arp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/packet"
)

// Addresses of the unit tests: us, a peer asking, the VIP we announce.
func ourMAC() net.HardwareAddr  { return net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01} }
func peerMAC() net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02} }

var (
	vip    = netip.MustParseAddr("192.0.2.100")
	peerIP = netip.MustParseAddr("192.0.2.1")
)

// arpFrame describes a frame field by field, so tests can build any of them, broken ones
// included, without the code under test.
type arpFrame struct {
	dst, src        net.HardwareAddr
	vlan            bool // insert an 802.1Q tag
	etherType       uint16
	htype, ptype    uint16
	hlen, plen      byte
	op              uint16
	sha, tha        net.HardwareAddr
	spa, tpa        []byte
	truncate, padTo int // cut the frame to truncate bytes (if > 0); pad it to padTo bytes
}

// request is a well-formed broadcast request from the peer for target.
func request(target netip.Addr) arpFrame {
	t := target.As4()
	s := peerIP.As4()
	return arpFrame{
		dst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src: peerMAC(),
		etherType: 0x0806, htype: 1, ptype: 0x0800, hlen: 6, plen: 4, op: 1,
		sha: peerMAC(), tha: make(net.HardwareAddr, 6), spa: s[:], tpa: t[:],
	}
}

func (a arpFrame) bytes() []byte {
	var b []byte
	b = append(b, a.dst...)
	b = append(b, a.src...)
	if a.vlan {
		b = append(b, 0x81, 0x00, 0x00, 0x07)
	}
	b = append(b, byte(a.etherType>>8), byte(a.etherType))
	b = append(b, byte(a.htype>>8), byte(a.htype), byte(a.ptype>>8), byte(a.ptype), a.hlen, a.plen,
		byte(a.op>>8), byte(a.op))
	b = append(b, a.sha...)
	b = append(b, a.spa...)
	b = append(b, a.tha...)
	b = append(b, a.tpa...)
	if a.truncate > 0 {
		b = b[:a.truncate]
	}
	for len(b) < a.padTo {
		b = append(b, 0)
	}
	return b
}

// sentFrame is one frame the responder wrote.
type sentFrame struct {
	frame []byte
	to    net.HardwareAddr
}

// fakeConn is a net.PacketConn in memory: tests push frames (or read errors) in and read
// what the responder wrote out.
type fakeConn struct {
	in       chan []byte
	readErrs chan error
	out      chan sentFrame
	closed   chan struct{}
	once     sync.Once
	writeErr error
	reading  atomic.Int32 // ReadFrom calls under way
}

func newFakeConn() *fakeConn {
	return &fakeConn{
		in:       make(chan []byte),
		readErrs: make(chan error),
		out:      make(chan sentFrame, 1000),
		closed:   make(chan struct{}),
	}
}

func (c *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.reading.Add(1)
	defer c.reading.Add(-1)
	select {
	case f := <-c.in:
		return copy(b, f), &packet.Addr{HardwareAddr: peerMAC()}, nil
	case err := <-c.readErrs:
		return 0, nil, err
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.out <- sentFrame{frame: append([]byte(nil), b...), to: addr.(*packet.Addr).HardwareAddr}
	return len(b), nil
}

func (c *fakeConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() { close(c.closed); err = nil })
	return err
}

func (c *fakeConn) LocalAddr() net.Addr              { return &packet.Addr{HardwareAddr: ourMAC()} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) isClosed() bool                   { return chanClosed(c.closed) }
func chanClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func newTestResponder(t testing.TB, announce ...netip.Addr) (*Responder, *fakeConn) {
	t.Helper()
	conn := newFakeConn()
	r, err := newResponder(&net.Interface{Name: "test0", HardwareAddr: ourMAC()}, conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range announce {
		if err := r.Announce(a); err != nil {
			t.Fatal(err)
		}
	}
	return r, conn
}

// sent returns what the responder wrote so far.
func (c *fakeConn) sent() []sentFrame {
	var s []sentFrame
	for {
		select {
		case f := <-c.out:
			s = append(s, f)
		default:
			return s
		}
	}
}

func TestProcessRequest(t *testing.T) {
	other := netip.MustParseAddr("192.0.2.101")
	withdrawn := netip.MustParseAddr("192.0.2.102")
	zero4 := []byte{0, 0, 0, 0}
	v := vip.As4()
	ok := request(vip)
	multicastMAC := net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 1}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// The reply every answered case expects, built by hand: to the peer, from us.
	reply := func(targetIP []byte) []byte {
		return arpFrame{
			dst: peerMAC(), src: ourMAC(), etherType: 0x0806, htype: 1, ptype: 0x0800, hlen: 6, plen: 4,
			op: 2, sha: ourMAC(), spa: v[:], tha: peerMAC(), tpa: targetIP, padTo: 60,
		}.bytes()
	}
	peer4 := peerIP.As4()

	tests := []struct {
		name      string
		frame     []byte
		writeErr  error
		want      dropReason
		wantReply []byte
	}{
		{name: "request", frame: ok.bytes(), want: dropReasonNone, wantReply: reply(peer4[:])},
		{name: "padded request", frame: with(ok, func(f *arpFrame) { f.padTo = 60 }).bytes(),
			want: dropReasonNone, wantReply: reply(peer4[:])},
		// The kernel refreshes a neighbour entry with a unicast request to the MAC it knows.
		{name: "unicast request to us", frame: with(ok, func(f *arpFrame) { f.dst = ourMAC() }).bytes(),
			want: dropReasonNone, wantReply: reply(peer4[:])},
		// RFC 5227 probe: sender IP 0.0.0.0; the answer goes to 0.0.0.0 at the prober's MAC.
		{name: "probe", frame: with(ok, func(f *arpFrame) { f.spa = zero4 }).bytes(),
			want: dropReasonNone, wantReply: reply(zero4)},

		{name: "empty", frame: nil, want: dropReasonMalformed},
		{name: "short Ethernet header", frame: ok.bytes()[:13], want: dropReasonMalformed},
		{name: "no ARP payload", frame: ok.bytes()[:14], want: dropReasonMalformed},
		{name: "ARP header cut", frame: ok.bytes()[:14+7], want: dropReasonMalformed},
		{name: "ARP addresses cut", frame: ok.bytes()[:14+27], want: dropReasonMalformed},
		{name: "IPv4 EtherType", frame: with(ok, func(f *arpFrame) { f.etherType = 0x0800 }).bytes(),
			want: dropReasonMalformed},
		{name: "VLAN tag", frame: with(ok, func(f *arpFrame) { f.vlan = true }).bytes(), want: dropReasonVLAN},
		{name: "hardware type", frame: with(ok, func(f *arpFrame) { f.htype = 6 }).bytes(),
			want: dropReasonNotEthernetIPv4},
		{name: "protocol type", frame: with(ok, func(f *arpFrame) { f.ptype = 0x86dd }).bytes(),
			want: dropReasonNotEthernetIPv4},
		{name: "hardware length", frame: with(ok, func(f *arpFrame) {
			f.hlen, f.sha, f.tha = 8, append(peerMAC(), 0, 0), make(net.HardwareAddr, 8)
		}).bytes(), want: dropReasonNotEthernetIPv4},
		{name: "IPv6-sized protocol addresses", frame: with(ok, func(f *arpFrame) {
			f.plen, f.spa, f.tpa = 16, make([]byte, 16), make([]byte, 16)
		}).bytes(), want: dropReasonNotEthernetIPv4},
		{name: "reply", frame: with(ok, func(f *arpFrame) { f.op = 2 }).bytes(), want: dropReasonNotRequest},
		{name: "RARP operation", frame: with(ok, func(f *arpFrame) { f.op = 3 }).bytes(), want: dropReasonNotRequest},
		{name: "unicast to another MAC", frame: with(ok, func(f *arpFrame) {
			f.dst = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x09}
		}).bytes(), want: dropReasonNotForUs},
		{name: "multicast destination", frame: with(ok, func(f *arpFrame) { f.dst = multicastMAC }).bytes(),
			want: dropReasonNotForUs},
		{name: "our Ethernet source", frame: with(ok, func(f *arpFrame) { f.src = ourMAC() }).bytes(),
			want: dropReasonFromUs},
		{name: "our sender MAC", frame: with(ok, func(f *arpFrame) { f.sha = ourMAC() }).bytes(),
			want: dropReasonFromUs},
		{name: "zero sender MAC", frame: with(ok, func(f *arpFrame) { f.sha = make(net.HardwareAddr, 6) }).bytes(),
			want: dropReasonBadSender},
		{name: "broadcast sender MAC", frame: with(ok, func(f *arpFrame) { f.sha = bcast }).bytes(),
			want: dropReasonBadSender},
		{name: "multicast sender MAC", frame: with(ok, func(f *arpFrame) { f.sha = multicastMAC }).bytes(),
			want: dropReasonBadSender},
		{name: "gratuitous request for our address", frame: with(ok, func(f *arpFrame) { f.spa = v[:] }).bytes(),
			want: dropReasonGratuitous},
		{name: "address not announced", frame: request(other).bytes(), want: dropReasonNotAnnounced},
		{name: "address withdrawn", frame: request(withdrawn).bytes(), want: dropReasonNotAnnounced},
		{name: "send error", frame: ok.bytes(), writeErr: syscall.ENOBUFS, want: dropReasonSendError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, conn := newTestResponder(t, vip, withdrawn)
			r.Withdraw(withdrawn)
			conn.writeErr = tt.writeErr

			if got := r.processRequest(tt.frame); got != tt.want {
				t.Fatalf("processRequest = %v, want %v", got, tt.want)
			}
			sent := conn.sent()
			var want Stats
			switch tt.want {
			case dropReasonNone:
				want.RequestsAnswered = 1
				if len(sent) != 1 {
					t.Fatalf("sent %d frames, want 1 reply", len(sent))
				}
				if diff := cmp.Diff(tt.wantReply, sent[0].frame); diff != "" {
					t.Errorf("reply (-want +got):\n%s", diff)
				}
				if !bytes.Equal(sent[0].to, peerMAC()) {
					t.Errorf("reply sent to %v, want %v", sent[0].to, peerMAC())
				}
			case dropReasonSendError:
				want.SendErrors = 1
			default:
				want.RequestsIgnored = 1
				if len(sent) != 0 {
					t.Errorf("sent %d frames for a dropped one, want none", len(sent))
				}
			}
			if diff := cmp.Diff(want, r.Stats()); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

func with(f arpFrame, change func(*arpFrame)) arpFrame {
	change(&f)
	return f
}

func TestAnnounceChecksAddress(t *testing.T) {
	r, _ := newTestResponder(t)
	for _, s := range []string{"2001:db8::1", "0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"} {
		if err := r.Announce(netip.MustParseAddr(s)); err == nil {
			t.Errorf("Announce(%s) succeeded, want an error", s)
		}
	}
	if err := r.Announce(netip.Addr{}); err == nil {
		t.Error("Announce(zero Addr) succeeded, want an error")
	}
	if len(r.addrs) != 0 {
		t.Errorf("rejected addresses were recorded: %v", r.addrs)
	}
	// An IPv4-mapped IPv6 address is its IPv4 address, for Announce and Withdraw alike.
	mapped := netip.AddrFrom16(vip.As16())
	if err := r.Announce(mapped); err != nil {
		t.Fatalf("Announce(%v) = %v", mapped, err)
	}
	if got := r.processRequest(request(vip).bytes()); got != dropReasonNone {
		t.Errorf("after Announce(%v), request for %v: %v, want answered", mapped, vip, got)
	}
	r.Withdraw(mapped)
	if got := r.processRequest(request(vip).bytes()); got != dropReasonNotAnnounced {
		t.Errorf("after Withdraw(%v), request for %v: %v, want not announced", mapped, vip, got)
	}
}

func TestNewChecksInterface(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	// Loopback has no Ethernet address; the check comes before any socket is opened.
	if _, err := New(&net.Interface{Index: 1, Name: "lo"}); err == nil {
		t.Error("New(interface without MAC) succeeded")
	}
}

// run starts r.Run and returns a function that stops it and returns its error.
func run(t *testing.T, r *Responder) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// next waits for the next frame the responder writes.
func (c *fakeConn) next(t *testing.T) sentFrame {
	t.Helper()
	select {
	case f := <-c.out:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame sent within 5s")
	}
	return sentFrame{}
}

// gratuitous is the gratuitous ARP expected for addr, built by hand.
func gratuitous(addr netip.Addr) []byte {
	a := addr.As4()
	return arpFrame{
		dst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src: ourMAC(),
		etherType: 0x0806, htype: 1, ptype: 0x0800, hlen: 6, plen: 4, op: 1,
		sha: ourMAC(), spa: a[:], tha: make(net.HardwareAddr, 6), tpa: a[:], padTo: 60,
	}.bytes()
}

// TestGratuitousBurst: an address announced before Run gets its gratuitous ARPs once Run
// runs, one plus len(repeats), in the form Linux accepts, and no more; one announced while
// Run runs gets its own at once.
func TestGratuitousBurst(t *testing.T) {
	r, conn := newTestResponder(t, vip)
	r.repeats = []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}
	time.Sleep(10 * time.Millisecond)
	if s := conn.sent(); len(s) != 0 {
		t.Fatalf("sent %d frames before Run", len(s))
	}
	stop := run(t, r)
	for i := range 4 {
		f := conn.next(t)
		if diff := cmp.Diff(gratuitous(vip), f.frame); diff != "" {
			t.Fatalf("gratuitous ARP %d (-want +got):\n%s", i, diff)
		}
		if !isBroadcast(f.to) {
			t.Errorf("gratuitous ARP %d sent to %v, want broadcast", i, f.to)
		}
	}

	second := netip.MustParseAddr("192.0.2.200")
	if err := r.Announce(second); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if f := conn.next(t); !bytes.Equal(f.frame, gratuitous(second)) {
			t.Fatalf("after Announce(%v), sent %x, want its gratuitous ARP", second, f.frame)
		}
	}

	// Announcing again what is announced sends nothing; Refresh sends a burst for each.
	if err := r.Announce(vip); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if s := conn.sent(); len(s) != 0 {
		t.Errorf("sent %d frames after each burst and a repeated Announce, want none", len(s))
	}
	r.Refresh()
	counts := map[string]int{}
	for range 8 {
		counts[string(conn.next(t).frame)]++
	}
	if counts[string(gratuitous(vip))] != 4 || counts[string(gratuitous(second))] != 4 {
		t.Errorf("after Refresh, sent %d frames for %v and %d for %v, want 4 each",
			counts[string(gratuitous(vip))], vip, counts[string(gratuitous(second))], second)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if s := conn.sent(); len(s) != 0 {
		t.Errorf("sent %d more frames after the bursts, want none", len(s))
	}
	if got := r.Stats().GratuitousSent; got != 16 {
		t.Errorf("GratuitousSent = %d, want 16", got)
	}
}

// TestWithdrawCancelsBurst: once Withdraw returns, nothing more is sent for the address.
func TestWithdrawCancelsBurst(t *testing.T) {
	r, conn := newTestResponder(t, vip)
	r.repeats = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	run(t, r)
	conn.next(t) // the first one, at once
	r.Withdraw(vip)
	conn.sent() // a repeat may have gone before Withdraw
	time.Sleep(150 * time.Millisecond)
	if s := conn.sent(); len(s) != 0 {
		t.Errorf("sent %d frames after Withdraw, want none", len(s))
	}
	if got := r.processRequest(request(vip).bytes()); got != dropReasonNotAnnounced {
		t.Errorf("request after Withdraw: %v, want not announced", got)
	}
}

// TestRun: Run answers what the socket reads, survives a transient read error, and on
// cancellation closes the socket and returns nil; it runs only once.
func TestRun(t *testing.T) {
	r, conn := newTestResponder(t)
	r.mu.Lock()
	r.addrs[vip] = struct{}{} // announced without gratuitous ARP, to see only the reply
	r.mu.Unlock()
	stop := run(t, r)

	conn.readErrs <- syscall.ENETDOWN
	conn.in <- request(netip.MustParseAddr("192.0.2.7")).bytes()
	conn.in <- request(vip).bytes()
	if f := conn.next(t); !bytes.Equal(f.to, peerMAC()) {
		t.Errorf("reply sent to %v, want %v", f.to, peerMAC())
	}
	if err := stop(); err != nil {
		t.Errorf("Run = %v, want nil after cancellation", err)
	}
	if !conn.isClosed() {
		t.Error("socket still open after Run returned")
	}
	if n := conn.reading.Load(); n != 0 {
		t.Errorf("%d reads still under way after Run returned: its reader has not exited", n)
	}
	want := Stats{RequestsAnswered: 1, RequestsIgnored: 1, ReadErrors: 1}
	if diff := cmp.Diff(want, r.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if err := r.Run(context.Background()); err == nil {
		t.Error("second Run succeeded, want an error")
	}
}

// TestRunSocketClosed: a socket closed under Run ends Run with an error, not a hang.
func TestRunSocketClosed(t *testing.T) {
	r, _ := newTestResponder(t)
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Run = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its socket was closed")
	}
}

// TestConcurrentUse is for the race detector: requests, announcements and withdrawals at once.
func TestConcurrentUse(t *testing.T) {
	r, conn := newTestResponder(t)
	r.repeats = []time.Duration{time.Millisecond}
	stop := run(t, r)
	// Drain what it sends, so the fake socket never blocks.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-conn.out:
			case <-conn.closed:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range 4 {
		addr := netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})
		wg.Go(func() {
			for range 100 {
				if err := r.Announce(addr); err != nil {
					t.Error(err)
					return
				}
				r.Withdraw(addr)
			}
		})
		wg.Go(func() {
			for range 100 {
				conn.in <- request(addr).bytes()
			}
		})
	}
	wg.Wait()
	_ = r.Stats()
	if err := stop(); err != nil {
		t.Error(err)
	}
	<-drained
}

func BenchmarkProcessRequest(b *testing.B) {
	r, conn := newTestResponder(b, vip)
	frame := request(vip).bytes()
	b.ReportAllocs()
	for b.Loop() {
		r.processRequest(frame)
		<-conn.out
	}
}
