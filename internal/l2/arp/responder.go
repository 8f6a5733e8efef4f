// Package arp answers ARP requests for the IPv4 service addresses (VIPs) that this node
// announces on one interface, and sends gratuitous ARP when it takes an address over, so
// clients move to this node at once instead of when their neighbour entry expires.
//
// The kernel is not involved: VIPs are not assigned to the interface (it may have no IPv4
// address at all), and the responder reads and writes whole Ethernet frames on a packet
// socket bound to the interface.
package arp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"

	"github.com/ferrolb/ferrolb/internal/l2/recovery"
)

const (
	// etherTypeARP is the protocol the packet socket is bound to, so the kernel hands it
	// ARP frames only.
	etherTypeARP = 0x0806

	// readBufSize holds any ARP frame worth reading: an Ethernet/IPv4 ARP frame is 42 bytes
	// (60 with padding). A longer frame is truncated, which is harmless: only the first 42
	// bytes matter.
	readBufSize = 128

	// writeTimeout bounds a send, which runs under the read lock (see Responder.mu), so that
	// Withdraw can never wait longer than this on a stuck socket.
	writeTimeout = time.Second

	// readRetry is the pause after a read error that does not end the socket (ENETDOWN
	// when the link goes down, for instance), so a persistent error cannot spin a CPU.
	readRetry = 100 * time.Millisecond
)

// defaultRepeats are the delays between the gratuitous ARPs of one announcement, after the
// first which is sent at once. The first one moves clients in well under a millisecond; the
// repeats are for when it does not arrive or does not stick:
//   - one frame can be lost: a congested link, a switch port or bridge that is not yet
//     forwarding (right after a link came up), a switch that has not yet learned our MAC;
//   - the previous owner may have had an answer in flight when it withdrew. A client that
//     takes it within the neighbour locktime (1 s by default on Linux) of our announcement
//     ignores it; one that takes it later would point back at the old node, and the last
//     repeat, 1.6 s after the first, sets it right.
//
// 0.1 s, then 0.5 s, then 1 s: four frames per address, over 1.6 s.
func defaultRepeats() []time.Duration {
	return []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second}
}

// Stats are the responder's counters since it was created, as plain numbers so that the
// speaker can export them (as Prometheus counters) without this package knowing how.
type Stats struct {
	// RequestsAnswered counts ARP requests for an announced address that were answered.
	RequestsAnswered uint64
	// RequestsIgnored counts ARP frames received and not answered: replies, requests for
	// addresses not announced, our own frames, malformed frames (each has a dropReason).
	RequestsIgnored uint64
	// GratuitousSent counts gratuitous ARPs sent.
	GratuitousSent uint64
	// SendErrors counts answers and gratuitous ARPs the socket refused.
	SendErrors uint64
	// ReadErrors counts failed reads from the socket, apart from the final one at shutdown.
	ReadErrors uint64
	// Panics counts frames whose handling panicked (a bug): each was dropped, and the
	// responder went on serving.
	Panics uint64
}

// burst is the state of the gratuitous ARPs of one announcement.
type burst struct {
	sent int       // gratuitous ARPs sent so far
	next time.Time // when the next one is due
}

// Responder answers ARP requests on one interface for the addresses it announces, with the
// interface's MAC address. Create it with New, start it with Run; Announce and Withdraw may
// be called from any goroutine, before or while Run runs.
type Responder struct {
	ifname  string
	hw      net.HardwareAddr // the interface's MAC, as it was when the Responder was created
	conn    net.PacketConn
	repeats []time.Duration // delays between gratuitous ARPs, defaultRepeats outside tests

	// kick wakes the gratuitous-ARP scheduler after Announce (capacity 1: one pending wake
	// is enough, the scheduler looks at every burst when it wakes).
	kick chan struct{}

	// mu guards addrs and bursts. Every send holds it (the read side) from the check that
	// the address is announced until the frame is written, so once Withdraw (the write
	// side) returns, nothing more is sent for the address it withdrew.
	mu     sync.RWMutex
	addrs  map[netip.Addr]struct{} // announced addresses
	bursts map[netip.Addr]*burst   // announced addresses whose gratuitous ARPs are not all sent

	started   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	answered, ignored, gratuitous, sendErrors, readErrors atomic.Uint64
	guard                                                 recovery.Guard
}

// New opens a packet socket for ARP on ifi, in the network namespace of the calling thread
// (a socket keeps its namespace for life), and returns a Responder that answers with ifi's
// MAC address. ifi needs an Ethernet address but no IPv4 address of its own.
//
// Run releases the socket when it returns; Close releases it if Run is never called.
func New(ifi *net.Interface) (*Responder, error) {
	if ifi == nil {
		return nil, errors.New("arp: no interface")
	}
	if err := checkHardwareAddr(ifi); err != nil {
		return nil, err
	}
	conn, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return nil, fmt.Errorf("arp: listen on %s: %w", ifi.Name, err)
	}
	r, err := newResponder(ifi, conn)
	if err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	return r, nil
}

// newResponder is New on a given socket: tests pass a fake one. conn must carry whole
// Ethernet frames and take *packet.Addr destinations, as a packet.Raw socket does.
func newResponder(ifi *net.Interface, conn net.PacketConn) (*Responder, error) {
	if err := checkHardwareAddr(ifi); err != nil {
		return nil, err
	}
	return &Responder{
		ifname:  ifi.Name,
		hw:      append(net.HardwareAddr(nil), ifi.HardwareAddr...),
		conn:    conn,
		repeats: defaultRepeats(),
		kick:    make(chan struct{}, 1),
		addrs:   make(map[netip.Addr]struct{}),
		bursts:  make(map[netip.Addr]*burst),
		guard:   recovery.Guard{Name: "arp " + ifi.Name},
	}, nil
}

// checkHardwareAddr refuses interfaces without an Ethernet address (loopback, tunnels,
// InfiniBand): ARP on them is either meaningless or not the Ethernet/IPv4 ARP we speak.
func checkHardwareAddr(ifi *net.Interface) error {
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("arp: interface %s has no Ethernet address (hardware address %q)", ifi.Name, ifi.HardwareAddr)
	}
	return nil
}

// HardwareAddr is the MAC address the Responder answers with.
func (r *Responder) HardwareAddr() net.HardwareAddr {
	return append(net.HardwareAddr(nil), r.hw...)
}

// Announce starts answering ARP requests for addr and sends gratuitous ARP for it at once
// (once Run runs, if it does not yet), then three more times over 1.6 s (see
// defaultRepeats).
//
// Announcing an address already announced does nothing, so that a caller that reconciles
// by announcing everything it should announce does not flood the segment; Refresh sends
// gratuitous ARP again on purpose.
//
// addr must be an IPv4 unicast address (an IPv4-mapped IPv6 address is taken as the IPv4
// address it maps).
func (r *Responder) Announce(addr netip.Addr) error {
	addr, err := checkAddr(addr)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.addrs[addr]; ok {
		return nil
	}
	r.addrs[addr] = struct{}{}
	r.startBurst(addr, time.Now())
	return nil
}

// Refresh restarts the gratuitous ARPs of every announced address, for when the segment may
// have forgotten where they are: the link came back up, the interface moved to another
// switch port.
func (r *Responder) Refresh() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for addr := range r.addrs {
		r.startBurst(addr, now)
	}
}

// startBurst (re)starts the gratuitous ARPs of addr and wakes the scheduler. The caller
// holds r.mu.
func (r *Responder) startBurst(addr netip.Addr, now time.Time) {
	r.bursts[addr] = &burst{next: now}
	select {
	case r.kick <- struct{}{}:
	default: // a wake is already pending
	}
}

// Withdraw stops answering for addr and cancels its pending gratuitous ARPs. When it
// returns, nothing more is sent for addr. Withdrawing an address not announced does nothing.
func (r *Responder) Withdraw(addr netip.Addr) {
	addr = addr.Unmap()
	r.mu.Lock()
	delete(r.addrs, addr)
	delete(r.bursts, addr)
	r.mu.Unlock()
}

// checkAddr returns the IPv4 address to announce for addr, or why it cannot be announced.
func checkAddr(addr netip.Addr) (netip.Addr, error) {
	addr = addr.Unmap()
	switch {
	case !addr.Is4():
		return addr, fmt.Errorf("arp: %v is not an IPv4 address", addr)
	case addr.IsUnspecified(), addr.IsLoopback(), addr.IsMulticast(),
		addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return addr, fmt.Errorf("arp: %v is not a unicast address", addr)
	}
	return addr, nil
}

// Stats returns the counters. Each is read atomically; together they are not a snapshot.
func (r *Responder) Stats() Stats {
	return Stats{
		RequestsAnswered: r.answered.Load(),
		RequestsIgnored:  r.ignored.Load(),
		GratuitousSent:   r.gratuitous.Load(),
		SendErrors:       r.sendErrors.Load(),
		ReadErrors:       r.readErrors.Load(),
		Panics:           r.guard.Panics(),
	}
}

// Run answers requests and sends gratuitous ARPs until ctx ends, then closes the socket and
// returns once the goroutine it started has exited. It returns nil when ctx ended, an error
// when the socket failed for good (closed by Close, for instance). Run runs once per
// Responder: a second call returns an error at once.
//
// Run does not watch the interface. If it goes down, reads fail once (counted in
// ReadErrors) and Run carries on; if it is deleted, nothing more arrives. The caller, which
// watches links, cancels ctx and makes a new Responder for the new interface (a new index,
// perhaps a new MAC), or calls Refresh when a link comes back up.
func (r *Responder) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("arp: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The reader is the only goroutine Run starts. It ends when the socket is closed, which
	// Run does below once ctx ends; if the reader ends first (the socket failed), it
	// cancels ctx so the scheduler ends too.
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		readErr = r.serve(ctx)
	})

	r.schedule(ctx)
	closeErr := r.Close()
	wg.Wait()
	if readErr != nil {
		return readErr
	}
	if closeErr != nil && !errors.Is(closeErr, net.ErrClosed) {
		return fmt.Errorf("arp: close socket on %s: %w", r.ifname, closeErr)
	}
	return nil
}

// Close closes the socket. Run calls it when ctx ends; call it yourself only for a
// Responder that will not Run. It is safe to call more than once.
func (r *Responder) Close() error {
	r.closeOnce.Do(func() { r.closeErr = r.conn.Close() })
	return r.closeErr
}

// serve reads ARP frames and answers those that ask for an announced address, until the
// socket is closed. It returns nil if ctx ended (Run closed the socket), an error otherwise.
func (r *Responder) serve(ctx context.Context) error {
	buf := make([]byte, readBufSize)
	for {
		n, _, err := r.conn.ReadFrom(buf)
		if err == nil {
			r.handle(buf[:n])
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("arp: socket on %s closed: %w", r.ifname, err)
		}
		r.readErrors.Add(1)
		t := time.NewTimer(readRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// handle processes one received frame. A panic there drops the frame, not the speaker.
func (r *Responder) handle(frame []byte) {
	defer r.guard.Recover()
	r.processRequest(frame)
}

// processRequest decides what to do with one received frame and, if it is a request for an
// announced address, answers it. It returns why the frame was not answered, or
// dropReasonNone if it was.
func (r *Responder) processRequest(frame []byte) dropReason {
	// The read lock is held until the answer is written: see Responder.mu.
	r.mu.RLock()
	defer r.mu.RUnlock()
	req, reason := r.decide(frame)
	if reason != dropReasonNone {
		r.ignored.Add(1)
		return reason
	}
	frame, err := replyFrame(r.hw, req)
	if err == nil {
		err = r.send(frame)
	}
	if err != nil {
		r.sendErrors.Add(1)
		return dropReasonSendError
	}
	r.answered.Add(1)
	return dropReasonNone
}

// schedule sends the gratuitous ARPs of every announcement when they are due, until ctx
// ends. It runs in Run's goroutine.
func (r *Responder) schedule(ctx context.Context) {
	// Fire at once: addresses announced before Run are due.
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-t.C:
		}
		if next, ok := r.sendDue(time.Now()); ok {
			t.Reset(time.Until(next))
		} else {
			t.Stop()
		}
	}
}

// sendDue sends the gratuitous ARPs due at now and returns when the next one is due, if any.
func (r *Responder) sendDue(now time.Time) (next time.Time, ok bool) {
	var due []netip.Addr
	r.mu.Lock()
	for addr, b := range r.bursts {
		if !b.next.After(now) {
			due = append(due, addr)
			if b.sent >= len(r.repeats) {
				delete(r.bursts, addr) // this was the last one
				continue
			}
			b.next = now.Add(r.repeats[b.sent])
			b.sent++
		}
		if !ok || b.next.Before(next) {
			next, ok = b.next, true
		}
	}
	r.mu.Unlock()
	// Sent outside the write lock, each under the read lock, so that answers are not held
	// up; sendGratuitous checks again that the address is still announced.
	for _, addr := range due {
		r.sendGratuitous(addr)
	}
	return next, ok
}

// sendGratuitous sends one gratuitous ARP for addr, if addr is still announced.
func (r *Responder) sendGratuitous(addr netip.Addr) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.addrs[addr]; !ok {
		return // withdrawn since it was found due
	}
	frame, err := gratuitousFrame(r.hw, addr)
	if err == nil {
		err = r.send(frame)
	}
	if err != nil {
		r.sendErrors.Add(1)
		return
	}
	r.gratuitous.Add(1)
}

// send writes one Ethernet frame, as marshalled by frameBytes; its destination MAC is its
// first 6 bytes.
func (r *Responder) send(frame []byte) error {
	// Concurrent senders may move each other's deadline; each moves it to about now+1s,
	// which is what both want.
	if err := r.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err := r.conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[:6])})
	return err
}
