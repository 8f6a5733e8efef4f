// Package recovery keeps a bug in a packet handler from taking the speaker down. Every
// speaker on a segment parses the same frames: a frame that makes the parser panic would
// stop them all at once, which is a worse outcome than dropping that frame. The handlers of
// ARP, NDP and heartbeats defer a Guard's Recover around each received packet.
package recovery

import (
	"log/slog"
	"math/bits"
	"runtime/debug"
	"sync/atomic"
)

// Guard counts the panics of one packet handler. The zero value is ready; Name says which
// handler in the log.
type Guard struct {
	Name   string
	panics atomic.Uint64
}

// Recover, deferred by a packet handler, stops a panic there: the packet is dropped, the
// panic counted and logged with its stack, and the handler's loop goes on with the next
// packet. It logs the 1st, 2nd, 4th, 8th... panic only, so that an attacker who found one
// cannot flood the log at line rate.
func (g *Guard) Recover() {
	p := recover()
	if p == nil {
		return
	}
	n := g.panics.Add(1)
	if bits.OnesCount64(n) == 1 {
		slog.Error("packet handler panicked: packet dropped, still serving (please report this bug)",
			"handler", g.Name, "panic", p, "panics", n, "stack", string(debug.Stack()))
	}
}

// Panics returns how many panics Recover stopped.
func (g *Guard) Panics() uint64 { return g.panics.Load() }
