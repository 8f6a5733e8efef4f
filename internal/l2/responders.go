package l2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"

	"github.com/ferrolb/ferrolb/internal/l2/arp"
	"github.com/ferrolb/ferrolb/internal/l2/ndp"
)

// ErrStopped is returned by Apply once Run has returned: nothing is announced any more.
var ErrStopped = errors.New("l2: responders stopped")

// Config configures Responders.
type Config struct {
	// Do runs f in the node's network namespace: the sockets f opens stay there for life.
	// Production runs in the host namespace already (nil: f runs on the calling thread);
	// tests run several nodes, each in a namespace of its own, in one process.
	Do func(f func() error) error
}

// Responders owns this node's ARP and NDP responders, one pair per interface that announces
// something, and keeps them in line with the addresses the node should answer for.
//
// Its state (the responders, what is announced, the link subscription) belongs to one
// goroutine, Run's loop. Apply hands it a request and waits for the answer; Announced,
// Takeovers and Stats read a snapshot the loop publishes after each change, so a metrics
// scrape never waits for an Apply. Every goroutine the loop starts (two per responder pair,
// and the link subscription's reader) has returned, and every socket is closed, when Run
// returns.
type Responders struct {
	do func(f func() error) error

	requests chan applyRequest
	changed  chan struct{}
	running  atomic.Bool
	done     chan struct{} // closed when Run returns
	snap     atomic.Pointer[snapshot]
}

type applyRequest struct {
	want  map[netip.Addr][]string
	reply chan error // capacity 1: the loop never waits for Apply
}

// snapshot is what the loop last published. It is never changed once published.
type snapshot struct {
	announced map[netip.Addr][]string
	ifaces    []namedPair
	takeovers uint64
}

type namedPair struct {
	name string
	arp  *arp.Responder
	ndp  *ndp.Responder
}

// InterfaceStats are the counters of one interface's responders.
type InterfaceStats struct {
	Name string
	ARP  arp.Stats
	NDP  ndp.Stats
}

// NewResponders returns Responders that announce nothing until Run runs and Apply is called.
func NewResponders(cfg Config) *Responders {
	do := cfg.Do
	if do == nil {
		do = func(f func() error) error { return f() }
	}
	r := &Responders{
		do:       do,
		requests: make(chan applyRequest),
		changed:  make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	r.snap.Store(&snapshot{})
	return r
}

// Run owns the responders until ctx ends. It subscribes to the node's link changes (each is
// signalled on Changed), serves Apply, and when ctx ends stops every responder and waits for
// it, closes the subscription and returns nil: a stopped speaker answers for nothing. It
// returns an error when the subscription cannot be opened or ends by itself; it has stopped
// everything then too. Run runs once.
func (r *Responders) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("l2: Responders.Run called twice")
	}
	defer close(r.done)

	updates := make(chan netlink.LinkUpdate, 64)
	unsubscribe := make(chan struct{})
	// The subscription's socket is opened in the node's namespace. Closing unsubscribe
	// closes it; its reader goroutine then closes updates and returns.
	if err := r.do(func() error { return netlink.LinkSubscribe(updates, unsubscribe) }); err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	l := &loop{do: r.do, ifaces: map[string]*pair{}, announced: map[netip.Addr][]string{}}
	defer func() {
		l.stopAll()
		r.snap.Store(&snapshot{takeovers: l.takeovers})
		close(unsubscribe)
		// The reader may be blocked sending an update: drain until it has closed updates,
		// which it does as it returns.
		for range updates {
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case req := <-r.requests:
			if ctx.Err() != nil {
				// Both were ready: what this request started would be stopped at once.
				req.reply <- ErrStopped
				return nil
			}
			err := l.apply(ctx, req.want)
			// Published before the answer, so that Announced after Apply sees this one.
			r.snap.Store(l.snapshot())
			req.reply <- err
		case _, ok := <-updates:
			if !ok {
				return errors.New("l2: link subscription closed")
			}
			select {
			case r.changed <- struct{}{}:
			default: // one pending signal covers any number of changes
			}
		}
	}
}

// Apply announces each address of want on its interfaces (names), and nothing else. It
// hands want to Run's loop and returns the loop's answer: before Run starts it waits for it
// (or for ctx to end), once Run has returned it returns ErrStopped. A request the loop has
// taken is finished whatever ctx does meanwhile.
//
// Addresses that are no longer wanted on an interface are withdrawn before anything is
// announced. What cannot be announced (no such interface, a responder that cannot open its
// socket, an address the protocol refuses) costs only itself: the error joins one error per
// address and interface, and everything else is announced.
func (r *Responders) Apply(ctx context.Context, want map[netip.Addr][]string) error {
	req := applyRequest{want: want, reply: make(chan error, 1)}
	select {
	case r.requests <- req:
	case <-r.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.reply
}

// Announced returns what is announced: address -> interfaces. It is empty before the first
// Apply and once Run has returned.
func (r *Responders) Announced() map[netip.Addr][]string {
	s := r.snap.Load()
	out := make(map[netip.Addr][]string, len(s.announced))
	for k, v := range s.announced {
		out[k] = slices.Clone(v)
	}
	return out
}

// Takeovers counts the addresses this node started announcing: an address counts each time
// it goes from announced nowhere to announced somewhere.
func (r *Responders) Takeovers() uint64 { return r.snap.Load().takeovers }

// Stats returns the counters of every interface's responders, by interface name. Once Run
// has returned there are none.
func (r *Responders) Stats() []InterfaceStats {
	s := r.snap.Load()
	out := make([]InterfaceStats, 0, len(s.ifaces))
	for _, p := range s.ifaces {
		out = append(out, InterfaceStats{Name: p.name, ARP: p.arp.Stats(), NDP: p.ndp.Stats()})
	}
	return out
}

// Changed receives a value after a link of the node changed (carrier lost or back, an
// interface added, removed or changed) while Run runs. One pending value stands for any
// number of changes; the receiver recomputes what to announce and calls Apply.
func (r *Responders) Changed() <-chan struct{} { return r.changed }

// Interfaces lists the node's Ethernet interfaces, except loopback, and the names of those
// usable: up and with carrier. An interface without carrier cannot reach clients: announcing
// on it would black-hole the address. It reads the interfaces in the node's namespace (Do)
// and does not involve Run's loop: it can be called at any time.
func (r *Responders) Interfaces() (all []net.Interface, usable []string, err error) {
	err = r.do(func() error {
		ifs, err := net.Interfaces()
		for _, ifi := range ifs {
			if ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) != 6 {
				continue
			}
			all = append(all, ifi)
			if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0 {
				usable = append(usable, ifi.Name)
			}
		}
		return err
	})
	return all, usable, err
}

// loop is the state Run's goroutine owns; nothing else touches it.
type loop struct {
	do     func(f func() error) error
	ifaces map[string]*pair
	// announced: address -> interfaces it is announced on.
	announced map[netip.Addr][]string
	takeovers uint64
}

// pair is the responders of one interface.
type pair struct {
	arp *arp.Responder
	ndp *ndp.Responder
	// The interface's index and MAC when the responders opened their sockets: an interface
	// deleted and created again (a new index) or given another MAC (a bond whose first port
	// changed) needs new responders, or the old ones answer on a dead socket or with a MAC
	// that no longer reaches this node.
	index  int
	mac    net.HardwareAddr
	cancel context.CancelFunc
	wg     sync.WaitGroup // the two Runs
}

// stop stops both responders and waits until their sockets are closed.
func (p *pair) stop() {
	p.cancel()
	p.wg.Wait()
}

func (l *loop) apply(ctx context.Context, want map[netip.Addr][]string) error {
	links, err := l.links()
	if err != nil {
		return err
	}
	var errs []error
	// Responders whose interface is gone or is not the one they opened go, with their
	// sockets, before anything else is sent; what they announced is announced again below
	// on new ones.
	for name, p := range l.ifaces {
		if ifi, ok := links[name]; !ok || ifi.Index != p.index || !bytes.Equal(ifi.HardwareAddr, p.mac) {
			p.stop()
			delete(l.ifaces, name)
		}
	}
	// Withdraw first: a takeover elsewhere must not meet a late answer from here.
	for addr, ifs := range l.announced {
		for _, name := range ifs {
			if slices.Contains(want[addr], name) {
				continue
			}
			if p := l.ifaces[name]; p != nil {
				withdraw(p, addr)
			}
		}
	}
	next := map[netip.Addr][]string{}
	for addr, ifs := range want {
		for _, name := range ifs {
			ifi, ok := links[name]
			if !ok {
				errs = append(errs, fmt.Errorf("announce %s on %s: no such interface", addr, name))
				continue
			}
			p, err := l.responders(ctx, ifi)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := announce(p, addr); err != nil {
				errs = append(errs, fmt.Errorf("announce %s on %s: %w", addr, name, err))
				continue
			}
			next[addr] = append(next[addr], name)
		}
		if len(l.announced[addr]) == 0 && len(next[addr]) > 0 {
			l.takeovers++
		}
	}
	l.announced = next
	return errors.Join(errs...)
}

// snapshot copies what readers may see; the maps and slices it shares are never changed
// (apply replaces announced whole).
func (l *loop) snapshot() *snapshot {
	s := &snapshot{announced: l.announced, takeovers: l.takeovers}
	for name, p := range l.ifaces {
		s.ifaces = append(s.ifaces, namedPair{name: name, arp: p.arp, ndp: p.ndp})
	}
	slices.SortFunc(s.ifaces, func(a, b namedPair) int { return strings.Compare(a.name, b.name) })
	return s
}

// stopAll stops every responder and waits for all of them.
func (l *loop) stopAll() {
	for _, p := range l.ifaces {
		p.cancel()
	}
	for name, p := range l.ifaces {
		p.wg.Wait()
		delete(l.ifaces, name)
	}
	l.announced = map[netip.Addr][]string{}
}

// links lists the node's interfaces by name.
func (l *loop) links() (map[string]net.Interface, error) {
	out := map[string]net.Interface{}
	err := l.do(func() error {
		ifs, err := net.Interfaces()
		for _, ifi := range ifs {
			out[ifi.Name] = ifi
		}
		return err
	})
	return out, err
}

// responders returns the responders of an interface, starting them on first use. They run
// until the loop stops them (pair.stop, stopAll), not until ctx ends (its values are kept):
// the loop alone ends them, and waits for them.
func (l *loop) responders(ctx context.Context, ifi net.Interface) (*pair, error) {
	name := ifi.Name
	if p := l.ifaces[name]; p != nil {
		return p, nil
	}
	p := &pair{index: ifi.Index, mac: slices.Clone(ifi.HardwareAddr)}
	err := l.do(func() error {
		var err error
		if p.arp, err = arp.New(&ifi); err != nil {
			return fmt.Errorf("ARP responder on %s: %w", name, err)
		}
		if p.ndp, err = ndp.New(&ifi); err != nil {
			return errors.Join(fmt.Errorf("NDP responder on %s: %w", name, err), p.arp.Close())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	// A responder whose socket fails for good returns early; its pair stays until its
	// interface changes or Run ends, as before the move into this package.
	p.wg.Go(func() { _ = p.arp.Run(ctx) })
	p.wg.Go(func() { _ = p.ndp.Run(ctx) })
	l.ifaces[name] = p
	return p, nil
}

func announce(p *pair, addr netip.Addr) error {
	if addr.Is4() {
		return p.arp.Announce(addr)
	}
	return p.ndp.Announce(addr)
}

func withdraw(p *pair, addr netip.Addr) {
	if addr.Is4() {
		p.arp.Withdraw(addr)
		return
	}
	_ = p.ndp.Withdraw(addr) // only fails for an address it could never have announced
}
