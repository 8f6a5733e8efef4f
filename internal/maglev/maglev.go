package maglev

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Table sizes. A size must be a prime in [MinSize, MaxSize].
const (
	// DefaultSize is the table size for a Service unless told otherwise: the size of the
	// paper's evaluation, which keeps equal backends within 1% of their share up to 655
	// backends (the paper asks for M > 100*N).
	DefaultSize = 65537
	// SmallSize is the table size for small Services: about 1 KiB per table in place of
	// 256 KiB.
	SmallSize = 251
	// MinSize is the smallest table size Build accepts. Nothing smaller is useful to the
	// datapath, and the floor turns a size left unset or given in the wrong unit into an
	// error rather than a useless table.
	MinSize = SmallSize
	// MaxSize bounds the table size: a table of MaxSize entries is already 64 MiB, far more
	// than a BPF map per Service should hold, and the bound keeps the turn arithmetic of the
	// population (turns times weight) well inside 64 bits.
	MaxSize = 1 << 24
)

// Errors returned by Build, wrapped with the offending value.
var (
	// ErrInvalidSize means the table size is not a prime in [MinSize, MaxSize].
	ErrInvalidSize = errors.New("maglev: invalid table size")
	// ErrNoBackends means no backend has a weight above zero. There is deliberately no table
	// of "no backend" entries: the datapath handles a Service without backends once (drop
	// or reject), before any lookup, instead of checking a sentinel on every packet.
	ErrNoBackends = errors.New("maglev: no backend with a weight above zero")
	// ErrDuplicateName means two backends have the same name, so the table could not say
	// which of them owns an entry.
	ErrDuplicateName = errors.New("maglev: duplicate backend name")
	// ErrTooManyBackends means more backends have a weight above zero than the table has
	// entries, so some of them could get no entry at all. Use a larger table.
	ErrTooManyBackends = errors.New("maglev: more backends than table entries")
)

// Backend is one backend of a table.
type Backend struct {
	// Name identifies the backend, for example "10.244.1.10:8080". It must be stable: the
	// backend's place in every table is a function of its name, so renaming a backend moves
	// its flows.
	Name string
	// Weight is the backend's share of the entries relative to the others. Zero keeps the
	// backend in Table.Backends but gives it no entry.
	Weight uint32
}

// Table is a populated Maglev lookup table.
type Table struct {
	// Backends are the backends Build was given, sorted by name (byte-wise), including those
	// of weight 0. This is the order the datapath must use for its backend array.
	Backends []Backend
	// Entries has one element per table entry: the index in Backends of the backend that
	// owns the flows whose hash h has h % len(Entries) equal to the element's index. Every
	// element is set; it can be written as is into a BPF array map.
	Entries []uint32
}

// empty marks an entry that no backend has claimed yet. Build refuses enough backends for
// it to be a valid index.
const empty = math.MaxUint32

// Build populates a table of size entries for backends, given in any order: the same set of
// backends always gives the same table. size is usually DefaultSize or SmallSize. backends
// is not modified. Build returns an error wrapping ErrInvalidSize, ErrDuplicateName,
// ErrNoBackends or ErrTooManyBackends, checked in that order.
//
// For M entries and N backends, filling the table probes about M*ln(M) entries (the last
// free entries take many probes to find, as in any open addressing), and ordering the turns
// costs O(M) when no weight exceeds 16 times the average and O(M log N) beyond: so
// O(M log M + M log N) whatever the weights. Memory is O(M + N), in three allocations (four
// when the weights are that skewed), none per entry.
func Build(size int, backends []Backend) (Table, error) {
	if err := CheckSize(size); err != nil {
		return Table{}, err
	}
	sorted := slices.Clone(backends)
	slices.SortFunc(sorted, func(a, b Backend) int { return strings.Compare(a.Name, b.Name) })
	active := 0
	for i, b := range sorted {
		if i > 0 && b.Name == sorted[i-1].Name {
			return Table{}, fmt.Errorf("%w %q", ErrDuplicateName, b.Name)
		}
		if b.Weight > 0 {
			active++
		}
	}
	if active == 0 {
		return Table{}, fmt.Errorf("%w (%d backends given)", ErrNoBackends, len(sorted))
	}
	if active > size {
		return Table{}, fmt.Errorf("%w: %d backends with a weight above zero, table size %d",
			ErrTooManyBackends, active, size)
	}
	// Indexes are uint32 and one value is the empty mark. Only a slice of four billion
	// weight-0 backends could reach it, but a wrong index is worse than an error.
	if uint64(len(sorted)) >= empty {
		return Table{}, fmt.Errorf("%w: %d backends", ErrTooManyBackends, len(sorted))
	}
	entries := make([]uint32, size)
	populate(entries, sorted, active)
	return Table{Backends: sorted, Entries: entries}, nil
}

// CheckSize returns an error wrapping ErrInvalidSize unless size is a prime in
// [MinSize, MaxSize]; for a size in range but not prime, it names the primes around it,
// for the error a user sees when a flag's value is not a valid size.
func CheckSize(size int) error {
	if size < MinSize {
		return fmt.Errorf("%w %d: below the minimum %d", ErrInvalidSize, size, MinSize)
	}
	if size > MaxSize {
		return fmt.Errorf("%w %d: above the maximum %d", ErrInvalidSize, size, MaxSize)
	}
	if !isPrime(size) {
		below, above := size-1, size+1
		for !isPrime(below) {
			below--
		}
		for !isPrime(above) {
			above++
		}
		// MinSize is prime, so below is never under it.
		near := fmt.Sprintf("%d or %d", below, above)
		if above > MaxSize {
			near = fmt.Sprint(below)
		}
		return fmt.Errorf("%w %d: not prime (try %s)", ErrInvalidSize, size, near)
	}
	return nil
}

// isPrime reports whether n is prime, by trial division: n is at most MaxSize, so this is
// at most about 2,000 divisions.
func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := 3; d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// cursor is where a backend is in its permutation of the entries.
type cursor struct {
	next   uint32 // the entry the backend tries first on its next turn
	skip   uint32
	index  uint32 // the backend's index in Table.Backends
	weight uint64
	credit uint64 // turnsByRounds: weight earned and not yet spent on turns
	turns  uint64 // turnsByHeap: turns taken so far
}

// claim takes c's turn: c claims the first entry of its permutation, from c.next on, that
// is still empty (Pseudocode 1). The permutation visits every entry, and the callers stop
// once all are taken, so this ends.
func (c *cursor) claim(entries []uint32) {
	m := uint32(len(entries)) //nolint:gosec // len(entries) <= MaxSize, checked by Build
	e := c.next
	for entries[e] != empty {
		e += c.skip // e, skip < m <= 2^24: no overflow
		if e >= m {
			e -= m
		}
	}
	entries[e] = c.index
	e += c.skip
	if e >= m {
		e -= m
	}
	c.next = e
}

// roundsMaxRatio picks the schedule of turns: Build walks the rounds one by one while the
// largest weight is at most roundsMaxRatio times the average, and uses the heap beyond. Both
// give the same turns. Walking the rounds costs about maxWeight/averageWeight steps per entry
// at under 1 ns a step; the heap costs log2(N) badly predicted comparisons per entry, about
// 20 ns for N = 10 and 60 ns for N = 1000 on the machine we measured. There the crossover
// was a ratio of about 40 for N = 100 and above 60 for N = 1000 (for N = 10 the ratio cannot
// exceed 10, and walking the rounds always won), so 16 stays on the safe side.
const roundsMaxRatio = 16

// populate fills entries (Pseudocode 1 with weighted turns, see the package documentation)
// for the sorted backends, active of which have a weight above zero. len(entries) is a
// prime at most MaxSize and active is in [1, len(entries)].
func populate(entries []uint32, backends []Backend, active int) {
	for i := range entries {
		entries[i] = empty
	}
	cursors, maxWeight, totalWeight := newCursors(backends, active, len(entries))
	// maxWeight < 2^32 and len(cursors) <= MaxSize = 2^24; totalWeight < 2^56.
	if maxWeight*uint64(len(cursors)) <= roundsMaxRatio*totalWeight {
		turnsByRounds(entries, cursors, maxWeight)
	} else {
		turnsByHeap(entries, cursors, maxWeight)
	}
}

// newCursors returns the cursors of the backends with a weight above zero, in name order,
// with the largest weight and the sum of the weights.
func newCursors(backends []Backend, active, size int) (cursors []cursor, maxWeight, totalWeight uint64) {
	m := uint32(size) //nolint:gosec // size <= MaxSize, checked by Build
	cursors = make([]cursor, 0, active)
	for i, b := range backends {
		if b.Weight == 0 {
			continue
		}
		offset, skip := permutation(b.Name, m)
		cursors = append(cursors, cursor{
			next:   offset,
			skip:   skip,
			index:  uint32(i), // i < len(backends) < empty, checked by Build
			weight: uint64(b.Weight),
		})
		maxWeight = max(maxWeight, uint64(b.Weight))
		totalWeight += uint64(b.Weight)
	}
	return cursors, maxWeight, totalWeight
}

// turnsByRounds is Katran's credit loop: each round, every backend earns its weight, and one
// whose credit reaches maxWeight spends it on a turn. It takes about
// len(entries)*maxWeight/averageWeight steps: one per entry when the weights are equal, and
// up to one per entry and backend when one weight dwarfs the others.
func turnsByRounds(entries []uint32, cursors []cursor, maxWeight uint64) {
	left := len(entries)
	for {
		for i := range cursors {
			c := &cursors[i]
			c.credit += c.weight // credit < maxWeight before, < 2^33 after
			if c.credit < maxWeight {
				continue
			}
			c.credit -= maxWeight
			c.claim(entries)
			if left--; left == 0 {
				return
			}
		}
	}
}

// turn is a heap element: the round in which a backend takes its next turn. Within a round
// the backends go in name order, which is the order of their cursors.
type turn struct {
	round  uint64
	cursor uint32
}

func (t turn) before(u turn) bool {
	return t.round < u.round || (t.round == u.round && t.cursor < u.cursor)
}

// turnsByHeap gives the turns of turnsByRounds in O(log N) per entry whatever the weights.
// After r rounds of the credit loop a backend of weight w has taken floor(r*w/maxWeight)
// turns, so its k-th turn (k from 1) falls in round ceil(k*maxWeight/w). The heap yields the
// backends by (round, name) order. k <= MaxSize+1 and maxWeight < 2^32: the product fits.
func turnsByHeap(entries []uint32, cursors []cursor, maxWeight uint64) {
	heap := make([]turn, len(cursors))
	for i := range cursors {
		heap[i] = turn{round: ceilDiv(maxWeight, cursors[i].weight), cursor: uint32(i)}
	}
	for i := len(heap)/2 - 1; i >= 0; i-- {
		siftDown(heap, i)
	}
	for range entries {
		top := &heap[0]
		c := &cursors[top.cursor]
		c.claim(entries)
		c.turns++
		top.round = ceilDiv((c.turns+1)*maxWeight, c.weight)
		siftDown(heap, 0)
	}
}

func ceilDiv(a, b uint64) uint64 {
	return (a + b - 1) / b
}

// siftDown restores the heap order below h[i], assuming it holds everywhere else. A
// hand-written heap rather than container/heap: it is on the path of every entry, and
// container/heap's interface calls would cost more than the rest of the loop.
func siftDown(h []turn, i int) {
	for {
		least := i
		if l := 2*i + 1; l < len(h) && h[l].before(h[least]) {
			least = l
		}
		if r := 2*i + 2; r < len(h) && h[r].before(h[least]) {
			least = r
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}
