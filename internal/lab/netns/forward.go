package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Forward makes a TCP service of the host's namespace reachable inside n: it listens on
// listen (e.g. "127.0.0.1:6443") inside n and relays each connection to target, dialled
// from the host's namespace. The lab's speakers run inside node namespaces and reach the
// API server, which listens on the host's loopback, this way; the API server's certificate
// stays valid because the address is the same on both sides.
//
// The listening socket belongs to n for life, so accepting and relaying need no namespace
// switching. Forward returns once listening; the relay runs until ctx ends, then closes
// the listener and every relayed connection and returns from stop.
func (n *NS) Forward(ctx context.Context, listen, target string) (stop func(), err error) {
	var l net.Listener
	if err := n.Do(func() (err error) {
		l, err = net.Listen("tcp", listen)
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen on %s in %s: %w", listen, n.Name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	track := func(c net.Conn, add bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if !add {
			delete(conns, c)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		conns[c] = struct{}{}
		return true
	}
	wg.Go(func() {
		<-ctx.Done()
		_ = l.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
					cancel()
				}
				return
			}
			wg.Go(func() { relay(ctx, in, target, track) })
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}

// relay copies both ways between in and a new connection to target until either side
// closes.
func relay(ctx context.Context, in net.Conn, target string, track func(c net.Conn, add bool) bool) {
	var d net.Dialer
	out, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		_ = in.Close()
		return
	}
	defer track(in, false)
	defer track(out, false)
	if !track(in, true) || !track(out, true) {
		_, _ = in.Close(), out.Close()
		return
	}
	var wg sync.WaitGroup
	for _, p := range [][2]net.Conn{{in, out}, {out, in}} {
		wg.Go(func() {
			_, _ = io.Copy(p[0], p[1])
			// One direction ended: end both, so the other copy returns too.
			_, _ = p[0].Close(), p[1].Close()
		})
	}
	wg.Wait()
}
