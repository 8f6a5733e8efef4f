package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ferrolb/ferrolb/internal/maglev"
)

// svcID identifies a service by VIP (unmapped), port and protocol: the key of
// Datapath.services (svcKey makes it the services map's).
type svcID struct {
	vip   netip.Addr
	port  uint16
	proto Protocol
}

// svcState is what a Datapath knows of a programmed service: its slot (id, its key in
// maglev_outer) and what was last written for it, so a SetServices writes only what
// changed.
type svcState struct {
	id       uint32
	svc      Service // as last applied in full
	size     int
	backends map[netip.AddrPort]*beState
	entries  []uint32 // the Maglev table as written, in backend slots
	retired  Counter  // traffic of the service's former backends whose slots were reused
}

// beState is a backend of a programmed service: its slot in the backends map, the
// generation written there (conntrack entries name both) and its next hop.
type beState struct {
	slot uint32
	gen  uint32
	addr netip.AddrPort
	nh   nexthop
}

// owner is the service a backend slot was last allocated to: the program counts per slot
// only, and a service's total sums its slots, draining ones included.
type owner struct {
	key svcID
	id  uint32
}

// validate refuses, before anything is written, a service that is malformed (address,
// port, protocol, mode, affinity, a backend not of the VIP's family) or given twice; its
// errors wrap ErrInvalidService.
func validate(svcs []Service) error {
	seen := map[svcID]bool{}
	for _, s := range svcs {
		k := svcID{s.VIP.Unmap(), s.Port, s.Protocol}
		if !k.vip.IsValid() || s.Port == 0 || (s.Protocol != TCP && s.Protocol != UDP) || s.Mode > DSR {
			return fmt.Errorf("%w: %v:%d/%d mode %d", ErrInvalidService, s.VIP, s.Port, s.Protocol, s.Mode)
		}
		if seen[k] {
			return fmt.Errorf("%w: %v:%d/%d given twice", ErrInvalidService, s.VIP, s.Port, s.Protocol)
		}
		seen[k] = true
		if s.Affinity < 0 {
			return fmt.Errorf("%w: %v:%d/%d negative affinity", ErrInvalidService, s.VIP, s.Port, s.Protocol)
		}
		for _, b := range s.Backends {
			if !b.Addr.IsValid() || b.Addr.Unmap().Is4() != k.vip.Is4() || b.Port == 0 {
				return fmt.Errorf("%w: %v:%d/%d backend %v port %d: invalid or not of the VIP's family",
					ErrInvalidService, s.VIP, s.Port, s.Protocol, b.Addr, b.Port)
			}
		}
	}
	return nil
}

// SetServices programs the full desired set of Services, incrementally: unchanged
// Services are not touched, and a changed Maglev table is filled in a new inner map that
// replaces the old one in a single map update, so no flow ever sees an empty or partial
// table. Flows in conntrack stay on their backend, even on a backend just removed (its
// entry lives on until its slot is reused). A Service without backends is programmed
// without a table: its packets pass to the stack, counted as ReasonNoBackend, and its
// flows in conntrack pass too. It is safe before and during Run.
func (d *Datapath) SetServices(svcs []Service) error {
	if err := validate(svcs); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("datapath: closed")
	}
	want := map[svcID]Service{}
	vips := map[netip.Addr]bool{}
	for _, s := range svcs {
		s.VIP = s.VIP.Unmap()
		want[svcID{s.VIP, s.Port, s.Protocol}] = s
		vips[s.VIP] = true
	}
	// The filter lets a service's packets through before the service is written, and
	// stops a removed service's packets only once it is gone.
	var next [1024]uint64
	for k := range want {
		bit := filterHash(k)
		next[bit/64] |= 1 << (bit % 64)
	}
	var union [1024]uint64
	for i := range union {
		union[i] = d.filter[i] | next[i]
	}
	errs := []error{d.writeFilter(union), d.addVIPs(vips)}
	for k, st := range d.services {
		if _, ok := want[k]; !ok {
			errs = append(errs, d.removeService(k, st))
		}
	}
	for k, s := range want {
		errs = append(errs, d.applyService(k, s))
	}
	errs = append(errs, d.writeFilter(next), d.removeVIPs(vips))
	return errors.Join(errs...)
}

// vipKey is an address's key in vip_addrs.
func vipKey(a netip.Addr) lbVipKey {
	var k lbVipKey
	k.Addr.W = addrWords(a)
	k.Family = family(a)
	return k
}

// addVIPs writes the addresses of vips that vip_addrs lacks: the program counts the
// packets it cannot parse only when they are for one of them.
func (d *Datapath) addVIPs(vips map[netip.Addr]bool) error {
	var errs []error
	for a := range vips {
		if d.vips[a] {
			continue
		}
		k := vipKey(a)
		if err := d.objs.VipAddrs.Update(&k, uint32(1), ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("datapath: address %v: %w", a, err))
			continue
		}
		d.vips[a] = true
	}
	return errors.Join(errs...)
}

// removeVIPs deletes the addresses no longer in vips from vip_addrs.
func (d *Datapath) removeVIPs(vips map[netip.Addr]bool) error {
	var errs []error
	for a := range d.vips {
		if vips[a] {
			continue
		}
		k := vipKey(a)
		if err := d.objs.VipAddrs.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("datapath: address %v: %w", a, err))
			continue
		}
		delete(d.vips, a)
	}
	return errors.Join(errs...)
}

// filterHash is filter_hash in bpf/lb.c: the bit of a service in vip_filter.
func filterHash(k svcID) uint32 {
	w := addrWords(k.vip)
	h := w[0] ^ w[1] ^ w[2] ^ w[3] ^ uint32(htons(k.port)) ^ uint32(k.proto)<<16
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h & 0xffff
}

// writeFilter writes the words of vip_filter that differ from what was written.
func (d *Datapath) writeFilter(f [1024]uint64) error {
	for i := range f {
		if f[i] == d.filter[i] {
			continue
		}
		if err := d.objs.VipFilter.Update(uint32(i), f[i], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("datapath: service filter: %w", err)
		}
		d.filter[i] = f[i]
	}
	return nil
}

// svcKey is a service's key in the services map, as bpf/lb.c builds it from a packet.
func svcKey(k svcID) lbSvcKey {
	var key lbSvcKey
	key.Vip.W = addrWords(k.vip)
	key.Port = htons(k.port)
	key.Proto = uint8(k.proto)
	key.Family = family(k.vip)
	return key
}

// removeService deletes a service from the maps and frees its slots. Its backend entries
// are cleared (not only freed), so its flows in conntrack miss at once and pass.
func (d *Datapath) removeService(k svcID, st *svcState) error {
	key := svcKey(k)
	err := d.objs.Services.Delete(&key)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		err = nil
	}
	if derr := d.objs.MaglevOuter.Delete(st.id); derr != nil && !errors.Is(derr, ebpf.ErrKeyNotExist) {
		err = errors.Join(err, derr)
	}
	err = errors.Join(err, d.clearBackends(k, st))
	d.svcFree = append(d.svcFree, st.id)
	delete(d.services, k)
	for slot, o := range d.slotOwner {
		if o.key == k && o.id == st.id {
			delete(d.slotOwner, slot)
		}
	}
	return err
}

// clearBackends frees the slots of st's backends and clears the entries of every slot
// the service still owns, its draining backends' included: the conntrack entries of its
// flows miss from now on, and their packets take the new-flow path. The slots stay the
// service's for its counters until they are reused.
func (d *Datapath) clearBackends(k svcID, st *svcState) error {
	var err error
	for ap, b := range st.backends {
		d.beFree = append(d.beFree, b.slot)
		delete(st.backends, ap)
	}
	for slot, o := range d.slotOwner {
		if o.key != k || o.id != st.id {
			continue
		}
		// Clear the generation: conntrack entries naming the slot miss from now.
		if berr := d.objs.Backends.Update(slot, &lbBackend{}, ebpf.UpdateAny); berr != nil {
			err = errors.Join(err, berr)
		}
	}
	return err
}

// applyEmpty programs a service without backends: an entry of size 0 and no table, which
// the program passes (ReasonNoBackend). A service that had backends loses them at once:
// the size first, so that no new flow reads the table, then the table, then the backend
// entries, so that its flows in conntrack pass too (as when a service is removed).
func (d *Datapath) applyEmpty(k svcID, s Service) error {
	st, isNew, err := d.serviceState(k)
	if err != nil {
		return err
	}
	if !isNew && st.svc.VIP.IsValid() && len(st.svc.Backends) == 0 && st.size == 0 &&
		st.svc.Mode == s.Mode && st.svc.Affinity == s.Affinity {
		return nil
	}
	if isNew {
		d.addService(k, st)
	}
	if err := d.writeService(k, st, s, 0); err != nil {
		return err
	}
	st.size = 0
	if st.entries != nil {
		if err := d.objs.MaglevOuter.Delete(st.id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("datapath: remove table: %w", err)
		}
		st.entries = nil
	}
	if err := d.clearBackends(k, st); err != nil {
		return err
	}
	s.Backends = nil
	st.svc = s
	return nil
}

// applyService programs one service (applyEmpty one without backends), in two halves. The first only
// looks and computes: a service refused there (no free service or backend slot, a table
// Maglev cannot build) leaves the maps and the Datapath's state as they were. The second
// writes, each step in an order that keeps what the program reads consistent: backend
// entries before the table that names them, the table before (or, when it shrinks,
// after) the size in the service entry. A step that fails returns at once, before st.svc
// is recorded.
func (d *Datapath) applyService(k svcID, s Service) error {
	if len(s.Backends) == 0 {
		return d.applyEmpty(k, s)
	}
	size := d.tableSize(s)
	st, isNew, err := d.serviceState(k)
	if err != nil {
		return err
	}
	want := backendWeights(s.Backends)
	if !isNew && st.unchanged(s, size, want) {
		return nil
	}
	table, err := buildTable(s, size, want)
	if err != nil {
		return err
	}
	if err := d.checkBackendSlots(st, want); err != nil {
		return err
	}

	// From here on the service is written.
	if isNew {
		d.addService(k, st)
	}
	d.releaseBackends(st, want)
	if err := d.addBackends(k, st, want); err != nil {
		return err
	}
	if err := d.writeTable(k, st, s, size, st.slotEntries(table)); err != nil {
		return err
	}
	if err := d.writeService(k, st, s, size); err != nil {
		return err
	}
	// Recorded last: a service that failed part way is applied in full on the next call.
	// A copy: the caller may reuse its slice.
	s.Backends = slices.Clone(s.Backends)
	st.svc = s
	return nil
}

// tableSize is the service's Maglev table size M: its own, else Config.MaglevTableSize.
func (d *Datapath) tableSize(s Service) int {
	if s.TableSize == 0 {
		return d.cfg.MaglevTableSize
	}
	return s.TableSize
}

// serviceState is the state of k when it is programmed. Otherwise it is a new state that
// takes the first free service slot, not yet claimed: addService claims it once nothing
// can refuse the service any more, so a refused service holds no slot.
func (d *Datapath) serviceState(k svcID) (st *svcState, isNew bool, err error) {
	if st := d.services[k]; st != nil {
		return st, false, nil
	}
	if len(d.svcFree) == 0 {
		return nil, false, fmt.Errorf("datapath: more than %d services", maxServices)
	}
	return &svcState{id: d.svcFree[0], backends: map[netip.AddrPort]*beState{}}, true, nil
}

// unchanged reports whether s, with its table size and backends' weights, is what st
// last applied in full. The speaker hands over every Service on every change in the
// cluster: one that is as programmed costs nothing (no table build, no map write).
func (st *svcState) unchanged(s Service, size int, want map[netip.AddrPort]uint32) bool {
	return st.size == size && st.svc.Mode == s.Mode && st.svc.Affinity == s.Affinity &&
		maps.Equal(want, backendWeights(st.svc.Backends))
}

// buildTable builds the service's Maglev table. A backend is named by its address and
// port, and its place in the table is a function of its name: every node builds the same
// table from the same backends, so a flow that ECMP moves to another node reaches the
// same backend. An error (a bad TableSize, more backends than entries) is the service's.
func buildTable(s Service, size int, want map[netip.AddrPort]uint32) (maglev.Table, error) {
	var mb []maglev.Backend
	for ap, w := range want {
		mb = append(mb, maglev.Backend{Name: ap.String(), Weight: w})
	}
	table, err := maglev.Build(size, mb)
	if err != nil {
		return maglev.Table{}, fmt.Errorf("%w: %v:%d/%d: %w", ErrInvalidService, s.VIP, s.Port, s.Protocol, err)
	}
	return table, nil
}

// checkBackendSlots fails when the backends new to st need more slots than are free, so
// that a service is refused before any of its backends is written.
func (d *Datapath) checkBackendSlots(st *svcState, want map[netip.AddrPort]uint32) error {
	newBE := 0
	for ap := range want {
		if st.backends[ap] == nil {
			newBE++
		}
	}
	if newBE > len(d.beFree) {
		return fmt.Errorf("datapath: more than %d backends", maxBackends)
	}
	return nil
}

// addService claims the service slot serviceState picked for a new service.
func (d *Datapath) addService(k svcID, st *svcState) {
	d.svcFree = d.svcFree[1:]
	d.services[k] = st
}

// releaseBackends frees the slots of st's backends that are no longer wanted. Their
// entries stay in the backends map, generation included, so the established flows they
// have drain there until the slot is reused: the free list is first in, first out, which
// makes that as late as possible.
func (d *Datapath) releaseBackends(st *svcState, want map[netip.AddrPort]uint32) {
	for ap, b := range st.backends {
		if _, ok := want[ap]; !ok {
			d.beFree = append(d.beFree, b.slot)
			delete(st.backends, ap)
		}
	}
}

// addBackends gives each backend new to st a slot and writes its entry; backends that
// stay keep their slot, so their flows and counters carry on.
func (d *Datapath) addBackends(k svcID, st *svcState, want map[netip.AddrPort]uint32) error {
	for ap := range want {
		if st.backends[ap] != nil {
			continue
		}
		if err := d.addBackend(k, st, ap); err != nil {
			return err
		}
	}
	return nil
}

// addBackend puts ap in the first free slot. The entry gets a new generation, so
// conntrack entries of the slot's previous backend, which name the slot with an older
// one, miss from now on; and a next hop resolved now, so the entry is complete when the
// table starts naming it. The slot's counter restarts at zero for ap, its traffic so far
// going to its previous service's total.
func (d *Datapath) addBackend(k svcID, st *svcState, ap netip.AddrPort) error {
	d.gen++
	b := &beState{slot: d.beFree[0], gen: d.gen, addr: ap, nh: d.resolve(ap.Addr())}
	d.beFree = d.beFree[1:]
	d.retireSlot(b.slot)
	if err := d.zeroCounter(d.objs.BeStats, b.slot); err != nil {
		return err
	}
	d.slotOwner[b.slot] = owner{k, st.id}
	if err := d.writeBackend(st.id, b); err != nil {
		return err
	}
	st.backends[ap] = b
	return nil
}

// slotEntries is the table as the program reads it: each entry the slot of a backend
// rather than its index in table.Backends.
func (st *svcState) slotEntries(table maglev.Table) []uint32 {
	slots := make([]uint32, len(table.Backends))
	for i, b := range table.Backends {
		ap := netip.MustParseAddrPort(b.Name)
		slots[i] = st.backends[ap].slot
	}
	entries := make([]uint32, len(table.Entries))
	for i, e := range table.Entries {
		entries[i] = slots[e]
	}
	return entries
}

// writeTable makes entries the service's table when they differ from the table written
// (backends, weights or size changed), and records the table and its size in st. The
// entries are filled into a new inner map that replaces the old one in one update of
// maglev_outer, so no flow sees a table half written or empty.
func (d *Datapath) writeTable(k svcID, st *svcState, s Service, size int, entries []uint32) error {
	if !slices.Equal(entries, st.entries) {
		inner, err := newTableMap(size, entries)
		if err != nil {
			return err
		}
		defer inner.Close()
		// The program reads the size from the service entry, then the table: order the
		// two updates so that the index it computes is always inside the table it finds.
		// Shrink the size first, grow the table first. (A new service has size 0: its
		// table comes first.)
		if size < st.size {
			if err := d.writeService(k, st, s, size); err != nil {
				return err
			}
		}
		if err := d.objs.MaglevOuter.Update(st.id, inner, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("datapath: swap inner map: %w", err)
		}
		st.entries = entries
	}
	st.size = size
	return nil
}

// newTableMap is an inner map for maglev_outer holding a table of size entries.
func newTableMap(size int, entries []uint32) (*ebpf.Map, error) {
	inner, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4,
		MaxEntries: uint32(size), Flags: unix.BPF_F_INNER_MAP}) //nolint:gosec // a valid Maglev size
	if err != nil {
		return nil, fmt.Errorf("datapath: inner map: %w", err)
	}
	keys := make([]uint32, size)
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := inner.BatchUpdate(keys, entries, nil); err != nil {
		_ = inner.Close()
		return nil, fmt.Errorf("datapath: fill inner map: %w", err)
	}
	return inner, nil
}

// backendWeights are a service's backends with their weights (0 counts as 1; a backend
// listed twice adds up).
func backendWeights(bs []Backend) map[netip.AddrPort]uint32 {
	out := make(map[netip.AddrPort]uint32, len(bs))
	for _, b := range bs {
		w := b.Weight
		if w == 0 {
			w = 1
		}
		out[netip.AddrPortFrom(b.Addr.Unmap(), b.Port)] += w
	}
	return out
}

// writeService writes the service entry: its slot, table size, affinity and mode.
func (d *Datapath) writeService(k svcID, st *svcState, s Service, size int) error {
	key := svcKey(k)
	var v lbSvcVal
	v.Id = st.id
	v.Size = uint32(size)                           //nolint:gosec // a valid Maglev size
	v.AffinityNs = uint64(s.Affinity.Nanoseconds()) //nolint:gosec // validated non-negative
	v.Mode = uint8(s.Mode)
	if err := d.objs.Services.Update(&key, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("datapath: service %v:%d/%d: %w", s.VIP, s.Port, s.Protocol, err)
	}
	return nil
}

// Backend flags, as BE_NEXTHOP and BE_STACK in bpf/lb.c.
const (
	beNexthop = 1
	beStack   = 2
)

// writeBackend writes a backend entry: address, port, owning service, generation, and the
// next hop (or the flag that sends its flows to the stack).
func (d *Datapath) writeBackend(svc uint32, b *beState) error {
	var v lbBackend
	v.Addr.W = addrWords(b.addr.Addr())
	v.Port = htons(b.addr.Port())
	v.Family = family(b.addr.Addr())
	switch {
	case b.nh.stack:
		v.Flags = beStack
	case b.nh.valid():
		v.Flags = beNexthop
		v.Ifindex = b.nh.ifindex
		copy(v.Smac[:], b.nh.smac)
		copy(v.Dmac[:], b.nh.dmac)
	}
	v.SvcId = svc
	v.Gen = b.gen
	return d.objs.Backends.Update(b.slot, &v, ebpf.UpdateAny)
}

// addrWords is an address as the BPF side stores it: network order bytes, IPv4 in the
// first word.
func addrWords(a netip.Addr) [4]uint32 {
	var w [4]uint32
	b := a.Unmap().AsSlice()
	for i := 0; i+4 <= len(b); i += 4 {
		w[i/4] = binary.NativeEndian.Uint32(b[i:])
	}
	return w
}

// htons stores a port in network order in a native uint16 field.
func htons(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// family is an address's family as bpf/lb.c stores it: 4 or 6.
func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}
