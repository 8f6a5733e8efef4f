package speaker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/ferrolb/ferrolb/internal/l2/arp"
	"github.com/ferrolb/ferrolb/internal/l2/ndp"
)

// announcer owns this node's ARP and NDP responders, one pair per interface that announces
// something, and keeps them in line with the addresses the node should answer for.
type announcer struct {
	// do runs f in the node's network namespace: sockets opened there stay there. Production
	// runs in the host namespace already (nil); tests run several nodes in one process.
	do func(f func() error) error

	started chan struct{}
	ctx     context.Context //nolint:containedctx // the responders' lifetime, set once by Start
	wg      sync.WaitGroup

	mu     sync.Mutex
	ifaces map[string]*responders
	// announced: address -> interfaces it is announced on.
	announced map[netip.Addr][]string
	// takeovers counts addresses this node started announcing.
	takeovers uint64
}

type responders struct {
	arp *arp.Responder
	ndp *ndp.Responder
	// The interface's index and MAC when the responders opened their sockets: an interface
	// deleted and created again (a new index) or given another MAC (a bond whose first port
	// changed) needs new responders, or the old ones answer on a dead socket or with a MAC
	// that no longer reaches this node.
	index  int
	mac    net.HardwareAddr
	cancel context.CancelFunc
}

func newAnnouncer(do func(func() error) error) *announcer {
	if do == nil {
		do = func(f func() error) error { return f() }
	}
	return &announcer{do: do, started: make(chan struct{}), ifaces: map[string]*responders{}, announced: map[netip.Addr][]string{}}
}

// Start runs until ctx ends, then stops every responder and waits for them: a stopped speaker
// answers for nothing.
func (a *announcer) Start(ctx context.Context) error {
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	close(a.started)
	<-ctx.Done()
	a.mu.Lock()
	for _, r := range a.ifaces {
		r.cancel()
	}
	a.mu.Unlock()
	a.wg.Wait()
	return nil
}

// interfaces lists the node's Ethernet interfaces, except loopback, and the names of those
// usable: up and with carrier. An interface without carrier cannot reach clients: announcing
// on it would black-hole the address.
func (a *announcer) interfaces() (all []net.Interface, usable []string, err error) {
	err = a.do(func() error {
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

// Apply announces each address of want on its interfaces, and nothing else.
func (a *announcer) Apply(ctx context.Context, want map[netip.Addr][]string) error {
	select {
	case <-a.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	links, err := a.links()
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	// Responders whose interface is gone or is not the one they opened go, with their
	// sockets; what they announced is announced again below on new ones.
	for name, r := range a.ifaces {
		if ifi, ok := links[name]; !ok || ifi.Index != r.index || !bytes.Equal(ifi.HardwareAddr, r.mac) {
			r.cancel()
			delete(a.ifaces, name)
		}
	}
	// Withdraw first: a takeover elsewhere must not meet a late answer from here.
	for addr, ifs := range a.announced {
		for _, name := range ifs {
			if slices.Contains(want[addr], name) {
				continue
			}
			if r := a.ifaces[name]; r != nil {
				withdraw(r, addr)
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
			r, err := a.responders(ifi)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := announce(r, addr); err != nil {
				errs = append(errs, fmt.Errorf("announce %s on %s: %w", addr, name, err))
				continue
			}
			next[addr] = append(next[addr], name)
		}
		if len(a.announced[addr]) == 0 && len(next[addr]) > 0 {
			a.takeovers++
		}
	}
	a.announced = next
	return errors.Join(errs...)
}

// Announced returns what is announced, for metrics and tests.
func (a *announcer) Announced() map[netip.Addr][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[netip.Addr][]string, len(a.announced))
	for k, v := range a.announced {
		out[k] = slices.Clone(v)
	}
	return out
}

// links lists the node's interfaces by name.
func (a *announcer) links() (map[string]net.Interface, error) {
	out := map[string]net.Interface{}
	err := a.do(func() error {
		ifs, err := net.Interfaces()
		for _, ifi := range ifs {
			out[ifi.Name] = ifi
		}
		return err
	})
	return out, err
}

// responders returns the responders of an interface, starting them on first use. Call with
// mu held.
func (a *announcer) responders(ifi net.Interface) (*responders, error) {
	name := ifi.Name
	if r := a.ifaces[name]; r != nil {
		return r, nil
	}
	r := &responders{index: ifi.Index, mac: slices.Clone(ifi.HardwareAddr)}
	err := a.do(func() error {
		var err error
		if r.arp, err = arp.New(&ifi); err != nil {
			return fmt.Errorf("ARP responder on %s: %w", name, err)
		}
		if r.ndp, err = ndp.New(&ifi); err != nil {
			return errors.Join(fmt.Errorf("NDP responder on %s: %w", name, err), r.arp.Close())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(a.ctx)
	r.cancel = cancel
	a.wg.Add(2)
	go func() { defer a.wg.Done(); _ = r.arp.Run(ctx) }()
	go func() { defer a.wg.Done(); _ = r.ndp.Run(ctx) }()
	a.ifaces[name] = r
	return r, nil
}

func announce(r *responders, addr netip.Addr) error {
	if addr.Is4() {
		return r.arp.Announce(addr)
	}
	return r.ndp.Announce(addr)
}

func withdraw(r *responders, addr netip.Addr) {
	if addr.Is4() {
		r.arp.Withdraw(addr)
		return
	}
	_ = r.ndp.Withdraw(addr) // only fails for an address it could never have announced
}

// watchLinks signals changed whenever a link of the node changes (carrier lost or back, an
// interface added or removed), until ctx ends.
func (a *announcer) watchLinks(ctx context.Context, changed func()) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	// The subscription's socket is opened in the node's namespace, and its reader goroutine
	// ends when done is closed.
	if err := a.do(func() error { return netlink.LinkSubscribe(updates, done) }); err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-updates:
			if !ok {
				return errors.New("link subscription closed")
			}
			changed()
		}
	}
}
