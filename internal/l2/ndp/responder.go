// Package ndp answers IPv6 Neighbor Discovery for the service addresses (VIPs) a node
// announces on one interface: solicited Neighbor Advertisements for solicitations that name
// an announced address, and a short burst of unsolicited ones when an address is announced,
// so that clients move to this node at once after a failover.
//
// It is the IPv6 half of layer-2 announcement; internal/l2/arp is the IPv4 half.
package ndp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/ferrolb/ferrolb/internal/l2/recovery"
)

// ErrClosed is returned by Announce and Run once Run has returned.
var ErrClosed = errors.New("ndp: responder closed")

// unsolicitedSchedule is when unsolicited advertisements go out, counted from the first.
// RFC 4861 7.2.6 allows up to MAX_NEIGHBOR_ADVERTISEMENT (3) of them, at least RetransTimer
// (1 s) apart. One would do on a perfect link; the repeats cover a lost frame and the race in
// which the previous owner's answer to an older solicitation reaches a client after our first
// advertisement and points it back. Staying within the RFC keeps a failover of many addresses
// from flooding the link.
var unsolicitedSchedule = []time.Duration{0, time.Second, 2 * time.Second}

// Stats are the Responder's counters since New, for export as metrics.
type Stats struct {
	// Answered counts solicitations answered with a Neighbor Advertisement.
	Answered uint64
	// Unsolicited counts unsolicited Neighbor Advertisements sent.
	Unsolicited uint64
	// Ignored counts frames that reached the responder and got no answer: solicitations for
	// addresses not announced, invalid or malformed ones (NotAnnounced is part of Ignored).
	Ignored uint64
	// NotAnnounced counts valid solicitations for addresses this responder does not announce.
	NotAnnounced uint64
	// SendErrors counts advertisements the kernel refused to send.
	SendErrors uint64
	// Panics counts frames whose handling panicked (a bug): each was dropped, and the
	// responder went on serving.
	Panics uint64
}

// announcement is the state of one announced address.
type announcement struct {
	// sent counts unsolicited advertisements sent; first is when the first went out.
	sent  int
	first time.Time
}

// Responder answers Neighbor Solicitations on one interface. Create it with New, start it
// with Run; Announce and Withdraw may be called from any goroutine, before or during Run.
type Responder struct {
	name     string
	mac      net.HardwareAddr
	conn     conn
	schedule []time.Duration // unsolicitedSchedule; shorter in tests
	bufSize  int

	// mu guards the fields below. Every send happens while mu is held (read-locked for
	// answers, locked for unsolicited advertisements), and Withdraw takes it exclusively:
	// when Withdraw returns, no advertisement for the address is in flight or will start.
	// That matters for failover, where a late advertisement from the old node would point
	// clients back at it.
	mu      sync.RWMutex
	addrs   map[netip.Addr]*announcement
	groups  map[netip.Addr]int // solicited-node group -> announced addresses that need it
	started bool
	closed  bool

	// wake tells Run's announcer that an address was announced (capacity 1; a pending
	// wake-up is enough).
	wake chan struct{}

	answered, unsolicited, ignored, notAnnounced, sendErrors atomic.Uint64
	guard                                                    recovery.Guard
}

// New opens the sockets of a responder on ifi, in the network namespace of the calling
// thread. ifi must be an Ethernet interface. The sockets are released when Run returns, so
// Run must be called.
func New(ifi *net.Interface) (*Responder, error) {
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("ndp: interface %s has no Ethernet address", ifi.Name)
	}
	c, err := openConn(ifi)
	if err != nil {
		return nil, fmt.Errorf("ndp: %w", err)
	}
	return newResponder(ifi, c), nil
}

// newResponder builds a Responder over any conn (a fake in unit tests).
func newResponder(ifi *net.Interface, c conn) *Responder {
	mtu := ifi.MTU
	if mtu < 1280 {
		mtu = 1500
	}
	return &Responder{
		name:     ifi.Name,
		mac:      append(net.HardwareAddr(nil), ifi.HardwareAddr...),
		conn:     c,
		schedule: unsolicitedSchedule,
		bufSize:  ethHeaderLen + mtu,
		addrs:    make(map[netip.Addr]*announcement),
		groups:   make(map[netip.Addr]int),
		wake:     make(chan struct{}, 1),
		guard:    recovery.Guard{Name: "ndp " + ifi.Name},
	}
}

// Run answers solicitations and sends unsolicited advertisements until ctx ends or reading
// fails, then closes the sockets. It returns only after every goroutine it started has
// exited; nil when ctx ended. Run may be called once.
//
// A link going down and up does not end Run. If the interface is deleted the socket stays
// silent for good: the caller, which watches interfaces, cancels ctx and makes a new
// Responder.
func (r *Responder) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started || r.closed {
		r.mu.Unlock()
		return errors.New("ndp: Run called twice")
	}
	r.started = true
	r.mu.Unlock()

	// The reader is the only goroutine Run starts. It exits when the socket is closed below
	// (or on a read error), and Run waits for it.
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { readErr <- r.readLoop() })

	err := r.announceLoop(ctx, readErr)

	r.mu.Lock()
	r.closed = true // from now on nothing is sent and Announce fails
	r.mu.Unlock()
	cerr := r.conn.close() // unblocks the reader
	wg.Wait()
	if err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("ndp: close %s: %w", r.name, cerr)
	}
	return nil
}

// readLoop reads and answers solicitations until the socket is closed (nil) or reading fails.
func (r *Responder) readLoop() error {
	b := make([]byte, r.bufSize)
	for {
		n, err := r.conn.readFrame(b)
		if err != nil {
			if r.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if isTransient(err) {
				continue
			}
			return fmt.Errorf("ndp: read on %s: %w", r.name, err)
		}
		r.handle(b[:n])
	}
}

func (r *Responder) isClosed() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.closed
}

// handle answers one frame if it asks for an announced address. The read lock is held from
// the decision to the send (see mu). A panic here drops the frame, not the speaker.
func (r *Responder) handle(b []byte) {
	defer r.guard.Recover()
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	rep, why := decide(b, r.mac, func(a netip.Addr) bool { _, ok := r.addrs[a]; return ok })
	switch why {
	case dropNone:
	case dropNotAnnounced:
		r.notAnnounced.Add(1)
		r.ignored.Add(1)
		return
	default:
		r.ignored.Add(1)
		return
	}
	if err := r.send(rep); err != nil {
		r.sendErrors.Add(1)
		return
	}
	r.answered.Add(1)
}

// send frames and writes one advertisement. Callers hold mu.
func (r *Responder) send(rep reply) error {
	f, err := rep.frame(r.mac)
	if err != nil {
		return err
	}
	return r.conn.writeFrame(f, rep.dstMAC)
}

// announceLoop sends unsolicited advertisements as they fall due, until ctx ends (nil) or the
// reader fails (its error).
func (r *Responder) announceLoop(ctx context.Context, readErr <-chan error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var tick <-chan time.Time
		if wait, ok := r.sendDue(time.Now()); ok {
			timer.Reset(wait) // since Go 1.23 Reset drops any stale tick
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return err
		case <-r.wake:
		case <-tick:
		}
	}
}

// sendDue sends every unsolicited advertisement due at now and reports how long until the
// next one is due (false if none is pending).
func (r *Responder) sendDue(now time.Time) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, false
	}
	var next time.Duration
	pending := false
	for addr, a := range r.addrs {
		if a.sent >= len(r.schedule) {
			continue
		}
		if a.sent == 0 || !now.Before(a.first.Add(r.schedule[a.sent])) {
			if a.sent == 0 {
				a.first = now
			}
			a.sent++
			rep := reply{dstMAC: allNodesMAC, src: addr, dst: allNodes, na: advertisement(addr, false, r.mac)}
			if err := r.send(rep); err != nil {
				r.sendErrors.Add(1)
			} else {
				r.unsolicited.Add(1)
			}
			if a.sent >= len(r.schedule) {
				continue
			}
		}
		wait := a.first.Add(r.schedule[a.sent]).Sub(now)
		if !pending || wait < next {
			next, pending = wait, true
		}
	}
	return next, pending
}

// Announce starts answering for addr on the interface: it joins addr's solicited-node group,
// and Run sends unsolicited advertisements for it at once (or as soon as Run starts) and
// twice more. Announcing an address already announced does nothing. addr must be an IPv6
// unicast address.
func (r *Responder) Announce(addr netip.Addr) error {
	addr, err := checkAddr(addr)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if _, ok := r.addrs[addr]; ok {
		return nil
	}
	group, err := ndp.SolicitedNodeMulticast(addr)
	if err != nil {
		return fmt.Errorf("ndp: %w", err)
	}
	// Several addresses can share a group (same low 24 bits); join once, leave after the last.
	if r.groups[group] == 0 {
		if err := r.conn.joinGroup(group); err != nil {
			return fmt.Errorf("ndp: join %s on %s for %s: %w", group, r.name, addr, err)
		}
	}
	r.groups[group]++
	r.addrs[addr] = &announcement{}
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is already pending; it will see this address too
	}
	return nil
}

// Withdraw stops answering for addr and cancels its pending unsolicited advertisements; when
// it returns nothing more is sent for addr. It leaves the solicited-node group when no other
// announced address needs it. Withdrawing an address not announced does nothing.
func (r *Responder) Withdraw(addr netip.Addr) error {
	addr, err := checkAddr(addr)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.addrs[addr]; !ok {
		return nil
	}
	delete(r.addrs, addr)
	group, err := ndp.SolicitedNodeMulticast(addr)
	if err != nil {
		return fmt.Errorf("ndp: %w", err)
	}
	r.groups[group]--
	if r.groups[group] > 0 {
		return nil
	}
	delete(r.groups, group)
	if r.closed {
		return nil // the socket, and its memberships, are gone
	}
	if err := r.conn.leaveGroup(group); err != nil {
		return fmt.Errorf("ndp: leave %s on %s: %w", group, r.name, err)
	}
	return nil
}

// Stats returns the counters.
func (r *Responder) Stats() Stats {
	return Stats{
		Answered:     r.answered.Load(),
		Unsolicited:  r.unsolicited.Load(),
		Ignored:      r.ignored.Load(),
		NotAnnounced: r.notAnnounced.Load(),
		SendErrors:   r.sendErrors.Load(),
		Panics:       r.guard.Panics(),
	}
}

// checkAddr accepts IPv6 unicast addresses (without zone) and refuses IPv4 ones, including
// IPv4-mapped IPv6: those belong to ARP.
func checkAddr(addr netip.Addr) (netip.Addr, error) {
	switch {
	case !addr.IsValid():
		return addr, errors.New("ndp: invalid address")
	case addr.Is4() || addr.Is4In6():
		return addr, fmt.Errorf("ndp: %s is an IPv4 address; announce it with ARP", addr)
	case addr.IsUnspecified() || addr.IsMulticast() || addr.IsLoopback():
		return addr, fmt.Errorf("ndp: %s is not a unicast address", addr)
	}
	return addr.WithZone(""), nil
}
