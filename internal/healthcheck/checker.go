package healthcheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxProbes bounds the probes in flight by default. A probe of a backend that hangs
// holds its place for its timeout: with 64 places and 2 s timeouts, 32 hanging backends a
// second still leave room for the others.
const DefaultMaxProbes = 64

// Config configures a Checker.
type Config struct {
	// Do runs f in the network namespace the probes are made from (a socket belongs to the
	// namespace of the thread that creates it); nil: the process's own.
	Do func(f func() error) error
	// MaxProbes bounds the probes in flight; default DefaultMaxProbes.
	MaxProbes int
	// OnChange is called when a target turns healthy or unhealthy, from the checker's
	// goroutines: it must not block (a non-blocking send that triggers a reconcile).
	OnChange func()
}

// Checker probes its targets until Run returns.
type Checker struct {
	cfg  Config
	sem  chan struct{}
	kick chan struct{} // Set has changed the targets: Run starts and stops probe loops

	mu      sync.Mutex
	targets map[Target]*state

	probes [2][2]atomic.Uint64 // by kind (TCP, HTTP) and outcome (success, failure)
}

// state is a target's verdict and the streak that leads to the next.
type state struct {
	unhealthy bool
	streak    int // consecutive probes that disagree with the verdict
	lastErr   string
}

// New returns a Checker without targets.
func New(cfg Config) *Checker {
	if cfg.Do == nil {
		cfg.Do = func(f func() error) error { return f() }
	}
	if cfg.MaxProbes <= 0 {
		cfg.MaxProbes = DefaultMaxProbes
	}
	return &Checker{cfg: cfg, sem: make(chan struct{}, cfg.MaxProbes), kick: make(chan struct{}, 1), targets: map[Target]*state{}}
}

// Set makes targets the ones probed. A target kept keeps its verdict; a new one starts
// healthy (fail open); one with an invalid Check is not probed, and so stays healthy.
func (c *Checker) Set(targets []Target) {
	want := make(map[Target]bool, len(targets))
	for _, t := range targets {
		if t.Check.Validate() == nil && t.Addr.IsValid() && t.Addr.Port() != 0 {
			want[t] = true
		}
	}
	c.mu.Lock()
	changed := false
	for t := range c.targets {
		if !want[t] {
			delete(c.targets, t)
			changed = true
		}
	}
	for t := range want {
		if c.targets[t] == nil {
			c.targets[t] = &state{}
			changed = true
		}
	}
	c.mu.Unlock()
	if changed {
		select {
		case c.kick <- struct{}{}:
		default: // one pending kick covers any number of changes
		}
	}
}

// Unhealthy returns the targets whose verdict is unhealthy, with the last probe's error.
// Any other target, a new one or one never given, is healthy.
func (c *Checker) Unhealthy() map[Target]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[Target]string{}
	for t, s := range c.targets {
		if s.unhealthy {
			out[t] = s.lastErr
		}
	}
	return out
}

// ProbeCount is how many probes of a kind had an outcome since the Checker was made.
type ProbeCount struct {
	Kind    Kind
	Success bool
	Count   uint64
}

// Probes counts the probes made, by kind and outcome, zeros included.
func (c *Checker) Probes() []ProbeCount {
	var out []ProbeCount
	for _, k := range []Kind{TCP, HTTP} {
		for i, ok := range []bool{true, false} {
			out = append(out, ProbeCount{Kind: k, Success: ok, Count: c.probes[k-1][i].Load()})
		}
	}
	return out
}

// Run probes the targets until ctx ends, one loop per target, and returns once they have
// all stopped.
func (c *Checker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	running := map[Target]context.CancelFunc{}
	defer wg.Wait()
	defer func() {
		for _, cancel := range running {
			cancel()
		}
	}()
	for {
		c.mu.Lock()
		want := maps.Clone(c.targets)
		c.mu.Unlock()
		for t, cancel := range running {
			if want[t] == nil {
				cancel()
				delete(running, t)
			}
		}
		for t := range want {
			if running[t] != nil {
				continue
			}
			tctx, cancel := context.WithCancel(ctx)
			running[t] = cancel
			wg.Go(func() { c.loop(tctx, t) })
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		}
	}
}

// loop probes t every interval, at a fixed rate, until ctx ends. The first probe comes at a
// random point of the first interval, so that the targets of a Service created with many
// endpoints (or of a speaker that starts) spread over the interval.
func (c *Checker) loop(ctx context.Context, t Target) {
	timer := time.NewTimer(rand.N(t.Check.Interval)) //nolint:gosec // spreads probes over time; nothing to guess
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return
	case <-timer.C:
	}
	tick := time.NewTicker(t.Check.Interval)
	defer tick.Stop()
	for {
		err := c.probe(ctx, t)
		if ctx.Err() != nil {
			return // stopped during the probe: no verdict
		}
		c.record(t, err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// record counts a probe's outcome and moves the target's verdict.
func (c *Checker) record(t Target, err error) {
	outcome := 0
	if err != nil {
		outcome = 1
	}
	c.probes[t.Check.Kind-1][outcome].Add(1)
	c.mu.Lock()
	s := c.targets[t]
	changed := false
	if s != nil {
		if err != nil {
			s.lastErr = err.Error()
		}
		if (err != nil) != s.unhealthy {
			s.streak++
			need := t.Check.UnhealthyThreshold
			if s.unhealthy {
				need = t.Check.HealthyThreshold
			}
			if s.streak >= need {
				s.unhealthy, s.streak, changed = !s.unhealthy, 0, true
			}
		} else {
			s.streak = 0
		}
	}
	c.mu.Unlock()
	if changed && c.cfg.OnChange != nil {
		c.cfg.OnChange()
	}
}

// probe makes one probe of t within its timeout, once one of the places in flight is free.
func (c *Checker) probe(ctx context.Context, t Target) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()
	ctx, cancel := context.WithTimeout(ctx, t.Check.Timeout)
	defer cancel()
	conn, err := c.dial(ctx, t.Addr)
	if err != nil {
		return timedOut(err, "connect", t.Check.Timeout)
	}
	defer conn.Close()
	if t.Check.Kind == TCP {
		return nil
	}
	return timedOut(get(ctx, conn, t), "answer", t.Check.Timeout)
}

// dial connects to addr from the configured namespace. The socket is created there, on a
// thread switched into it for the dial, and stays there for life.
func (c *Checker) dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := c.cfg.Do(func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil && conn != nil {
		_ = conn.Close() // the thread could not switch back after a successful dial
		return nil, err
	}
	return conn, err
}

// get sends an HTTP/1.1 GET of t's path on conn and reads the status line and headers. The
// request is written by hand rather than by an http.Client: one connection per probe,
// closed with it, no pool and no goroutine of a Transport left behind.
func get(ctx context.Context, conn net.Conn, t Target) error {
	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(d); err != nil {
			return err
		}
	}
	// The speaker stopping ends a probe at once, not after its timeout.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	path := t.Check.Path
	if path == "" {
		path = "/"
	}
	if err := ValidatePath(path); err != nil {
		return err // Set refuses such a target; this is the last line of defence
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+t.Addr.String()+path, nil)
	if err != nil {
		return err
	}
	req.Close = true
	req.Header.Set("User-Agent", "ferrolb-health-check")
	w := bufio.NewWriter(conn)
	if err := req.Write(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.LimitReader(conn, 64<<10)), req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close() // the body is not read: the status says it all
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// timedOut says "no answer" for a probe that ran out of time, rather than the socket's
// words for it.
func timedOut(err error, stage string, timeout time.Duration) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s: no answer within %v", stage, timeout)
	}
	return fmt.Errorf("%s: %w", stage, err)
}
