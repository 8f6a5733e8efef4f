package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// settings of a measurement.
type settings struct {
	runs             int
	warmup, duration time.Duration
	nodeCPU          int
}

// row is one mode's result.
type row struct {
	mode       mode
	kpps       []float64 // delivered to the backends (or dropped at the node), per run
	sentKpps   []float64 // accepted by the generator's socket, per run
	nsPerPkt   float64   // the node's XDP program: median of separate runs with statistics on; -1 if none
	nsRuns     []float64 // those runs' figures
	note       string
	measured   bool
	retryShare float64 // sendmmsg calls refused for back-pressure / all calls, last run
	seen       tally   // what the counters saw in the last run
}

func (r *row) median() float64 { return median(r.kpps) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// measure sets the mode up, runs it and tears it down. A mode this machine cannot run gives
// a row with a note and no error.
func measure(ctx context.Context, e *env, m mode, gen *generator, delivered func() (tally, error), st settings) (r row, err error) {
	r = row{mode: m, nsPerPkt: -1}
	if err := e.topo.flushConntrack(); err != nil {
		return r, fmt.Errorf("flush conntrack: %w", err)
	}
	teardown, prog, err := m.setup(ctx, e)
	var na notAvailable
	if errors.As(err, &na) {
		r.note = na.Error()
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("%s: set up: %w", m.name, err)
	}
	defer func() {
		if teardown != nil {
			if terr := teardown(); terr != nil {
				err = errors.Join(err, fmt.Errorf("%s: tear down: %w", m.name, terr))
			}
		}
	}()
	// Attaching XDP may (re)start NAPI threads: pin them again.
	if _, err := e.topo.pinNAPI(st.nodeCPU); err != nil {
		return r, err
	}
	for range st.runs {
		res, err := runOnce(ctx, gen, delivered, nil, st.warmup, st.duration)
		if err != nil {
			return r, fmt.Errorf("%s: %w", m.name, err)
		}
		r.kpps = append(r.kpps, res.kpps)
		r.sentKpps = append(r.sentKpps, res.sentKpps)
		r.retryShare, r.seen = res.retryShare, res.seen
	}
	r.measured = true
	if prog != nil {
		// The statistics cost every BPF program two clock reads per run: they are on only for
		// this extra run, whose throughput is not reported.
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			r.note = "no BPF run-time statistics: " + err.Error()
			return r, nil
		}
		defer func() { _ = stats.Close() }()
		for range st.runs {
			res, err := runOnce(ctx, gen, delivered, prog, st.warmup/2, st.duration)
			if err != nil {
				return r, fmt.Errorf("%s: statistics run: %w", m.name, err)
			}
			r.nsRuns = append(r.nsRuns, res.nsPerPkt)
		}
		r.nsPerPkt = median(r.nsRuns)
	}
	return r, nil
}

type once struct {
	kpps, sentKpps, nsPerPkt, retryShare float64
	seen                                 tally
}

// runOnce starts the generator, warms up, counts over duration and stops the generator.
func runOnce(ctx context.Context, gen *generator, delivered func() (tally, error), prog *ebpf.Program, warmup, duration time.Duration) (res once, err error) {
	gen.start()
	defer func() {
		err = errors.Join(err, gen.halt())
		// Let the rings drain before anything else happens.
		time.Sleep(200 * time.Millisecond)
	}()
	if err := sleep(ctx, warmup); err != nil {
		return res, err
	}
	c0, err := delivered()
	if err != nil {
		return res, err
	}
	s0, r0 := gen.sent.Load(), gen.retries.Load()
	var p0 progCost
	if prog != nil {
		if p0, err = costOf(prog); err != nil {
			return res, err
		}
	}
	t0 := time.Now()
	if err := sleep(ctx, duration); err != nil {
		return res, err
	}
	c1, err := delivered()
	if err != nil {
		return res, err
	}
	s1, r1 := gen.sent.Load(), gen.retries.Load()
	el := time.Since(t0).Seconds()
	if prog != nil {
		p1, err := costOf(prog)
		if err != nil {
			return res, err
		}
		res.nsPerPkt = nsPerPacket(p0, p1)
	}
	res.seen = c1.sub(c0)
	res.kpps = float64(res.seen.all) / el / 1000
	res.sentKpps = float64(s1-s0) / el / 1000
	if calls := float64(s1-s0)/batch + float64(r1-r0); calls > 0 {
		res.retryShare = float64(r1-r0) / calls
	}
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
