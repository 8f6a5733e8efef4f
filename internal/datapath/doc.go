// Package datapath is FerroLB's XDP load balancer on the node (DESIGN.md section 5).
//
// One XDP program (bpf/lb.c, built by bpf2go; the generated lb_bpfel.go and .o are
// committed so a plain go build needs no clang) runs on the node's ingress interface and on
// any interface that leads to backends, in native (driver) mode, or in generic mode where
// the driver has no XDP (Config.XDPMode, xdpmode.go: auto runs every interface in generic
// mode once one lacks native XDP, as a native program's redirect to such an interface is
// dropped; generic mode sees packets after GRO, and one merged beyond the egress MTU is
// dropped when redirected). For each packet it:
//
//  1. parses Ethernet, IPv4 without options or IPv6 without extension headers, and a TCP
//     or UDP header. Anything else — other protocols, IPv4 options, IPv6 extension headers,
//     fragments, truncated or malformed headers, length fields that disagree with the
//     headers or the frame (an IP length past the frame or short of the headers, a TCP data
//     offset under 5, a UDP length under 8 or past the packet) — goes to the stack
//     (XDP_PASS): the stack owns validation and reassembly, and kube-proxy or the stack
//     can still answer. Every access is bounds-checked, so no input can fault, and the
//     headers read and rewritten are the packet's own, not Ethernet padding. Fragments,
//     options and malformed headers are counted (see "Counted" below) when they are for
//     a service's address: vip_addrs, a hash of the addresses, is read on those rare
//     packets only.
//  2. if the destination is the node's SNAT address and port range, looks the reply up in
//     snat_rev and reverses the SNAT (VIP:port -> client), sending it out of the interface
//     the client's packet came in on, to the MAC it came from. XDP on the backend-facing
//     interface rather than tcx: replies arrive from the backends, so catching them at XDP
//     ingress is cheaper than letting the stack route them, and it needs no second program
//     type.
//  3. reads one bit of vip_filter (an inlined array read of a 65536-bit hash filter of the
//     services' VIP, port and protocol): traffic for no service passes here without a
//     hash lookup, and uncounted.
//  4. looks the flow up in conntrack (conntrack4 with a 16-byte key, conntrack6 with a
//     40-byte one; per-CPU LRU hashes, BPF_F_NO_COMMON_LRU, so no shared lock on the hot
//     path). A hit names the backend slot, its generation and the flow's mode; it is
//     honoured while the slot still has that generation, so an established flow needs no
//     service or table lookup and stays on its backend whatever the backend set becomes.
//     Userspace clears the generation of a removed service's backends. A TCP SYN skips
//     this step: it starts a connection, perhaps on the addresses and ports of an old one
//     whose SNAT port has since gone to another flow.
//     IPv4 flows are looked up first in ct4_cache, each CPU's cache of conntrack4: 64-byte
//     lines of three entries (4 MB per CPU with 2 CPUs and the default ConntrackSize), key
//     and value together, indexed by a hash of the 5-tuple, so that an established flow's
//     packet reads one cache line instead of the LRU's bucket and element. conntrack4
//     stays the truth: new flows are written there first, a miss in the cache looks the
//     flow up there (and copies it into the cache), and a flow that finds its line full
//     (replacement by second chance: a slot not hit since the line last needed room) is
//     only looked up there. Per CPU, so that no entry is ever written by two CPUs at once;
//     a SYN that gives an existing flow's addresses and ports another backend or SNAT port
//     than the entry still honoured bumps ct_epoch, which empties every CPU's cache (the
//     old value may be cached on another CPU). Every 16th hit of a cached flow looks its
//     conntrack4 entry up, so that busy flows stay recent in the LRU, and writes it back
//     if the LRU evicted it. A cache entry keeps the low 16 bits of its backend's
//     generation: it would be honoured wrongly only if its backend slot were reused a
//     multiple of 65,536 times while it stays cached.
//  5. on a miss: the service (services hash map by VIP, port, protocol; a miss passes;
//     a service without backends has no table and passes its packets, counted);
//     with ClientIP affinity (the only path that reads the clock) the client's last
//     backend if younger than the timeout; else the service's Maglev table, an inner
//     array of maglev_outer (array of maps) indexed by hash % M, whose entries are backend
//     slots. The new flow is recorded in conntrack, and for SNAT a node port is picked by
//     hash with up to 8 probes and recorded in snat_rev. A probe may take a port whose
//     flow is over: idle (no reply) for Config.SNATIdleClosed after the backend sent FIN
//     or RST, SNATIdleTCP for an established TCP flow, SNATIdleOther for UDP and for TCP
//     flows not established. A TCP flow is established once the client has ACKed the
//     backend's SYN-ACK: the reply path records the SYN-ACK's sequence number, and the
//     first client ACK (without SYN) that acknowledges it, within 64 KiB, marks the
//     snat_rev entry; conntrack notes that it is done, so only a flow's first ACKs
//     look snat_rev up. A SYN-ACK alone does not count, so handshakes that never
//     complete (a SYN flood, spoofed sources) hold a port for SNATIdleOther after the
//     backend's last SYN-ACK, not for hours. Replies refresh their entry at most once per
//     tick of a 1.07 s coarse clock.
//  6. counts packets and bytes per backend slot (one per-CPU array; a service's total is
//     the sum of its slots, summed in userspace, so the packet pays one counter lookup),
//     then either rewrites addresses and ports (SNAT, checksums updated incrementally per
//     RFC 1624) or prepends an IPIP / IP6IP6 header (DSR), sets the MACs of the backend's
//     next hop and sends it: XDP_TX on the same interface, bpf_redirect to another.
//
// So an established IPv4 flow costs one array read (vip_filter), one line of ct4_cache
// (or, on a miss there, an LRU hash lookup too), one array read for the backend and one
// per-CPU counter; IPv6 flows the LRU lookup; a new flow adds the service lookup, the
// table read and the conntrack (and SNAT reverse) inserts. docs/performance.md has the
// figures, against a probe that reads one cache line per flow.
//
// Counted: every packet the program does not forward for a service, by reason, in
// reason_stats (a per-CPU array indexed by enum reason; Reason in reasons.go names them):
// passed to the stack for a fragment, IP options or an IPv6 extension header, a malformed
// header (those three only when the destination is a service's address), a TTL or hop
// limit of 1 or 0 on a packet it would forward, a service without backends, a backend
// without a resolved next hop, a flow the stack carries (BE_STACK), a packet to the SNAT
// address and port range that no flow holds; dropped when a new SNAT flow finds no port
// or DSR cannot make room for the outer header. Each costs one array increment off the
// forwarding path; packets for no service, the common case on a node, are not counted.
// TTL is checked once the packet is known to be a service's (or a SNAT flow's reply), so
// that the node's own traffic with TTL 1 (single-hop eBGP, some multicast) is not counted.
//
// Next hops are resolved in userspace (route get and the neighbour table, asking the
// kernel for a managed neighbour entry when it is missing) and stored in each backend
// entry, so the fast path calls no bpf_fib_lookup; Run refreshes them on neighbour updates,
// on link updates and periodically. Run attaches by interface name: one deleted and created
// again (a bond or VLAN rebuilt) is attached anew under its new index, and the next hops
// move to it; while an interface is gone, flows to backends behind it pass to the stack.
// (The SNAT addresses are the program's constants, read once by New.) A backend without a resolved next hop makes its new flows pass to the
// stack. A backend whose route leaves through an interface the program is not attached
// to (a pod's veth or the bridge of pods on this node, an overlay device) or that is the
// node itself is marked BE_STACK: XDP cannot send into a pod's veth without a program in
// the pod, and SNAT replies from there would not come back through an attached
// interface. Flows that Maglev gives such a backend pass to the stack untouched, where
// kube-proxy carries them, and are recorded in conntrack with mode "stack" so they stay
// there when the table changes.
//
// Updates are atomic from a flow's point of view: a changed Maglev table is written into
// a new inner map which then replaces the old one in one update of maglev_outer; when the
// table size changes, the size in the service entry and the inner map are swapped in the
// order that keeps every computed index inside the table found. A removed backend's entry
// stays in place (slots are reused first in, first out) so its established flows drain;
// new flows never pick it. A service that loses all its backends keeps its entry without
// a table (size 0), and its backends' entries are cleared, as a removed service's are:
// its flows, new and established, pass, counted as no-backend.
//
// The backend side of DSR is the Decapsulator (bpf/decap.c, its own bpf2go target): a
// tcx ingress program the speaker attaches to the same interfaces, so it runs after
// xdp_lb (which passes tunnel packets to the stack) and beside other tcx programs (it
// returns TCX_NEXT). For an IPIP / IP6IP6 packet it checks, bounds-checked and pulling
// the headers into the linear part first when they are not: an outer IPv4 header without
// options or fragmentation (IPv6: no extension header), an inner header of the same
// version without options, fragmentation or extension headers, lengths that agree (outer
// = inner + its header, within the frame), a TCP or UDP destination port; then one hash
// lookup of (outer destination, inner destination, port, protocol) in decap_allow, the
// pairs of this node's endpoints and their Services' addresses that the speaker writes.
// Only a hit is decapsulated (bpf_skb_adjust_room, BPF_ADJ_ROOM_MAC with the decap L3
// flag), and the client's packet goes on into the stack (kube-proxy's rules for the
// Service address, or a VIP the backend holds on lo). Everything else is left as it came:
// an attacker's tunnel packet to an internal address stays a tunnel packet, which the
// stack drops (no ipip device) or hands to whatever tunnel the node has. Tunnel packets
// are counted by result (decap_stats); other traffic pays the protocol checks only and is
// not counted. AttachDecap (xdp_decap in lb.c, which strips any tunnel packet) remains
// for the benchmark's backends, which are not nodes.
// SNAT packets (both ways) have their TTL / hop limit decremented like any routed packet,
// and those arriving with 1 go to the stack to be answered; DSR leaves the inner packet as
// the client sent it (the outer header starts at 64).
//
// Limits, by design or not yet done: XDP cannot fragment, so DSR needs MTU headroom (20
// bytes for IPv4, 40 for IPv6) between the node and the backends, or a lower MTU (MSS)
// towards the clients; ICMP
// errors about balanced flows (PMTU's "fragmentation needed" included) go to the stack,
// not to the backend; DSR does no port translation, so Backend.Port is ignored and the
// backend must listen on the service's port; SNAT ports are picked by hash with 8 probes,
// so a busy backend can see new flows dropped well before its port range is full; the
// decapsulator does not verify the outer IPv4 header checksum nor the outer source
// (any host that can reach a node can tunnel a packet to a Service's address and port
// through it, which it could send directly anyway, with a source of its choosing);
// conntrack entries leave by LRU eviction only (only SNAT ports time out),
// and the tables are sized when New loads them (Config.ConntrackSize for conntrack4,
// conntrack6 and snat_rev, Config.MaglevTableSize per service; their memory is measured by
// TestMapMemory and given in docs/performance.md);
// a UDP flow whose backend never answers loses its SNAT port after SNATIdleOther even
// while the client still sends; a SYN flood still holds a backend's SNAT ports, each for
// SNATIdleOther after the backend's last SYN-ACK (60 to about 90 s with Linux's
// defaults, which retransmit it for 31 s), so 50 to 75 SYNs a second hold all of a
// backend's default 4,536 ports; and
// traffic with IPv4 options, IPv6 extension headers or fragments is never balanced.
package datapath

// The code, by concern:
//
//	datapath.go  the types callers use (Service, Backend, Mode, Config) and the Datapath's fields
//	kind.go      Kind: the speaker's --datapath choice
//	xdpmode.go   XDPMode, Attachments: native, generic or auto, and what each interface runs in
//	loader.go    New (load the program, set its constants), Run (attach, follow the
//	             interfaces and the neighbours), Close
//	services.go  SetServices: the service and backend state, applyService's steps, the map writes
//	nexthop.go   a backend's next hop, from the route and neighbour tables
//	counters.go  Counters: the per-slot counters summed per service and backend
//	reasons.go   Reason and ReasonCounts: the packets not forwarded, by reason
//	inspect.go   Services and Conntrack: what is programmed and the flows, for ferrolb inspect
//	             (served and printed by the inspect subpackage)
//	decapsulator.go  Decapsulator, the backend nodes' side of DSR (bpf/decap.c)
//	decap.go     AttachDecap, the unchecked XDP decapsulation of the benchmark's backends
//	bpf/lb.c     the XDP programs; bpf/decap.c the tcx decapsulator; gen.go makes
//	             lb_bpfel.go/.o and decap_bpfel.go/.o from them
