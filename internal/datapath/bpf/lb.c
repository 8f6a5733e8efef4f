// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// FerroLB XDP load balancer. See ../doc.go for the design; comments here say why the code
// is shaped the way it is, mostly to keep the per-packet cost low and the verifier happy.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_SERVICES 4096
#define MAX_BACKENDS 16384
#define MAX_TABLE 65537

#define MODE_SNAT 0
#define MODE_DSR 1

#define BE_NEXTHOP 1 /* the backend entry holds a resolved next hop */
#define BE_STACK 2   /* reached through an interface we are not on (a pod on this node):
			the stack carries its flows (kube-proxy) */

// A conntrack entry's mode: MODE_SNAT, MODE_DSR, or this, for a flow left to the stack.
#define MODE_STACK 2

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

// Addresses are kept in network order, IPv4 in the first word and the rest zero, so one
// key layout serves both families.
union addr {
	__u32 w[4];
	__u8 b[16];
};

struct svc_key {
	union addr vip;
	__be16 port;
	__u8 proto;
	__u8 family;
};

struct svc_val {
	__u32 id;         // slot in maglev_outer and svc_stats
	__u32 size;       // Maglev M of the inner table in maglev_outer[id]
	__u64 affinity_ns; // ClientIP affinity timeout, 0 = off
	__u8 mode;
	__u8 pad[7];
};

struct backend {
	union addr addr;
	__be16 port;
	__u8 family;
	__u8 flags;
	__u32 ifindex; // egress interface of the next hop
	__u8 dmac[6];  // dmac then smac, as in the Ethernet header: set_macs copies both at once
	__u8 smac[6];
	__u32 svc_id; // owner; a conntrack entry is only honoured by its own service
	__u32 gen;    // bumped when the slot is reused so stale conntrack entries miss
};

struct ct_key {
	union addr saddr;
	union addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

// IPv4 flows get a key of their own: 16 bytes hash faster and fit the element in one
// cache line with its value.
struct ct4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct ct_val {
	__u32 backend;
	__u32 gen;
	__be16 nat_port; // SNAT mode: the node's source port for this flow
	__u8 mode;       // a flow keeps the mode it started with
	__u8 settled;    // TCP SNAT: snat_rev needs nothing more from this direction (see confirm)
	__u8 pad[4];
};

// SNAT reverse path: the reply (backend -> node:nat_port) is keyed by what it carries.
struct rev_key {
	union addr baddr;
	__be16 bport;
	__be16 nport;
	__u8 proto;
	__u8 family; // an IPv6 address can look like an IPv4 one padded with zeros
	__u8 pad[2];
};

struct rev_val {
	union addr client;
	union addr vip;
	__be16 cport;
	__be16 vport;
	__u32 ifindex; // where the client's packet came in, so the reply leaves there
	__u8 cmac[6];  // the client's (or its router's) MAC, from the first packet; then
	__u8 nmac[6];  // our MAC on that interface (Ethernet header order, see set_macs)
	__u32 seen;    // clock ticks (see now_ticks) of the flow's start or latest reply
	__u32 synack_seq; // TCP: the sequence number of the backend's SYN-ACK, host order
	__u8 closing;  // a reply carried FIN or RST
	__u8 synack;   // TCP: a SYN-ACK came back; synack_seq is set
	__u8 established; // TCP: the client ACKed that SYN-ACK (see confirm)
	__u8 pad;
};

struct aff_key {
	union addr client;
	__u32 svc_id;
};

struct aff_val {
	__u32 backend;
	__u32 gen;
	__u64 ts;
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

// Why the program did not forward a packet: the index of reason_stats, which counts them
// per CPU. reasons.go names them; the values are append-only (the speaker exports every
// one as a metric label). The first two are never counted: parse's "go on", and the
// packets that are for no service (or not TCP/UDP), the common case on a node, which must
// not pay for a counter.
enum reason {
	REASON_NONE,
	REASON_NOT_SERVICE,
	// Passed to the stack.
	REASON_FRAGMENT,      // an IPv4 fragment or an IPv6 Fragment header, to a VIP
	REASON_IP_OPTIONS,    // IPv4 options or another IPv6 extension header, to a VIP
	REASON_MALFORMED,     // a truncated header or a length that disagrees, to a VIP
	REASON_TTL_EXPIRED,   // TTL / hop limit 1 or 0 on a packet we would have forwarded
	REASON_NO_BACKEND,    // a service without a usable backend (none ready)
	REASON_NO_NEXTHOP,    // the backend's next hop (neighbour) is not resolved
	REASON_STACK_ENDPOINT, // a flow to a backend the stack carries (BE_STACK, MODE_STACK)
	REASON_SNAT_NO_FLOW,  // to the SNAT address and port range, and no flow holds the port
	// Dropped.
	REASON_SNAT_PORTS_EXHAUSTED, // a new SNAT flow found no free port in 8 probes
	REASON_ENCAP_FAILED,  // DSR: no headroom for the outer header
	REASON_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
} services SEC(".maps");

// A 65536-bit filter of (VIP, port, protocol) hashes: one inlined array read lets traffic
// that is for no service skip the hash lookups.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} vip_filter SEC(".maps");

// Inner Maglev tables may differ in size (M=251 or 65537): BPF_F_INNER_MAP lifts the
// same-max_entries rule for array inner maps.
struct maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_TABLE);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct maglev_inner);
} maglev_outer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct ct4_key);
	__type(value, struct ct_val);
} conntrack4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct ct_key);
	__type(value, struct ct_val);
} conntrack6 SEC(".maps");

// ct4_cache is each CPU's cache of conntrack4, so that an established IPv4 flow's packet
// reads one cache line instead of the LRU's bucket and element (two or three lines, each
// a miss once flows are many). A line holds three entries, key and value together; CPU c
// uses lines c * ct4_cache_lines to (c + 1) * ct4_cache_lines - 1, indexed by ct4_hash.
// Userspace sizes it: a power of two of lines per CPU, about two lines per flow a CPU can
// hold in conntrack4 (its size over the CPUs), from 1,024 to 65,536 lines (4 MB, the size
// of conntrack4's bucket array; what 2 CPUs and the default 262,144 flows get). Per CPU, because XDP runs on one CPU at a time there: no entry is ever
// written by two CPUs at once, and a hit needs no lock. BPF_F_MMAPABLE puts the values on
// a page boundary, so each 64-byte value is one cache line.
//
// conntrack4 stays the truth: every entry is written there first, a miss here looks it
// up there (and copies it here), and a collision only sends a flow to conntrack4. A line
// is honoured only while it carries the current ct_epoch: a write that changes an entry
// of conntrack4 that other CPUs may hold here (a SYN that reuses a flow's addresses and
// ports after its backend or port changed) bumps ct_epoch, which empties every CPU's
// cache at once. Every 16th hit of an entry looks its conntrack4 entry up, so that busy
// flows stay recent in the LRU (and are written back if it evicted them).
volatile const __u32 ct4_cache_lines = 65536; // per CPU, a power of two

#define CT4_MODE 0x03    // the flow's mode
#define CT4_SETTLED 0x04 // ct_val.settled
#define CT4_REF 0x08     // hit since the line last needed room (second chance, see ct4_put)
#define CT4_HIT 0x10     // the upper 4 bits count hits (see above)

struct ct4_slot {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto; // 0: empty
	__u8 flags; // CT4_*
	__u16 backend; // < MAX_BACKENDS
	__be16 nat_port;
	__u16 gen; // the low 16 bits of the backend's generation
};

struct ct4_line {
	__u32 epoch; // ct_epoch when its entries were written
	struct ct4_slot s[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536); // userspace sets it to ct4_cache_lines * possible CPUs
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct ct4_line);
} ct4_cache SEC(".maps");

// Bumped when a conntrack4 entry some CPU may cache changes (see ct4_cache).
__u32 ct_epoch = 0;

// Shared LRU: the reply of a flow may arrive on another CPU than its request.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct rev_key);
	__type(value, struct rev_val);
} snat_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct aff_key);
	__type(value, struct aff_val);
} affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct counter);
} be_stats SEC(".maps");

// Packets not forwarded, by reason. The key's type puts enum reason in the BTF, where
// userspace checks its names against its own.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, enum reason);
	__type(value, __u64);
} reason_stats SEC(".maps");

// The services' addresses, so that packets the program cannot parse (fragments, options,
// malformed headers) are counted only when they are for a service: read on those rare
// packets only. IGMP's and MLD's router alert options, say, are not ours to count.
struct vip_key {
	union addr addr;
	__u8 family;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SERVICES);
	__type(key, struct vip_key);
	__type(value, __u32);
} vip_addrs SEC(".maps");

// Set by userspace before loading: constants cost nothing per packet.
volatile const __u32 snat4 = 0;          // network order
volatile const __u32 snat6[4] = {0};     // network order
volatile const __u16 snat_port_min = 61000;
volatile const __u16 snat_port_max = 65535;
// A SNAT port is taken back from a flow idle this long, in ticks of now_ticks (userspace
// sets them from Config).
volatile const __u32 snat_idle_tcp = 20117;   // an established TCP flow (see confirm): 6 h
volatile const __u32 snat_idle_other = 56;    // UDP, or a TCP handshake not completed: 60 s
volatile const __u32 snat_idle_closed = 10;   // after a FIN or RST from the backend: 10 s

struct flow {
	union addr saddr;
	union addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 ttl;
	__u8 tcpflags;
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

// now_ticks is the coarse monotonic clock in ticks of 2^30 ns (1.07 s): cheap to read,
// fine enough for idle timeouts of seconds to hours.
static __always_inline __u32 now_ticks(void)
{
	return bpf_ktime_get_coarse_ns() >> 30;
}

static __always_inline __u32 fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 csum_fold_acc(__u32 acc)
{
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	return acc;
}

// RFC 1624 incremental update: add ~old + new for each 16-bit word replaced.
static __always_inline __u32 diff32(__u32 acc, __u32 from, __u32 to)
{
	acc += (~from & 0xffff) + (~from >> 16);
	acc += (to & 0xffff) + (to >> 16);
	return acc;
}

static __always_inline __u32 diff16(__u32 acc, __u16 from, __u16 to)
{
	return acc + (__u16)~from + to;
}

static __always_inline void csum_apply(__u16 *csum, __u32 acc)
{
	__u32 s = (__u16)~*csum;
	s = csum_fold_acc(s + csum_fold_acc(acc));
	*csum = (__u16)~s;
}

static __always_inline __u32 diff_addr(__u32 acc, const union addr *from, const union addr *to, int v6)
{
	acc = diff32(acc, from->w[0], to->w[0]);
	if (v6) {
		acc = diff32(acc, from->w[1], to->w[1]);
		acc = diff32(acc, from->w[2], to->w[2]);
		acc = diff32(acc, from->w[3], to->w[3]);
	}
	return acc;
}

static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct counter *c = bpf_map_lookup_elem(map, &idx);
	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

// verdict counts why a packet is not forwarded and returns the action: one per-CPU array
// increment, paid only off the forwarding path.
static __always_inline int verdict(int action, enum reason r)
{
	__u32 k = r;
	__u64 *n = bpf_map_lookup_elem(&reason_stats, &k);
	if (n)
		(*n)++;
	return action;
}

// Pointers into the packet for the headers we rewrite.
struct hdrs {
	struct ethhdr *eth;
	struct iphdr *ip4;
	struct ipv6hdr *ip6;
	__be16 *sport;
	__be16 *dport;
	__u16 *l4csum; // NULL for IPv4 UDP without checksum
	struct tcphdr *tcp; // NULL for UDP
	int udp;
};

// Rewrites addresses and ports, fixing the IPv4 header and L4 checksums incrementally.
static __always_inline void rewrite(struct hdrs *h, struct flow *f, const union addr *saddr,
				    const union addr *daddr, __be16 sport, __be16 dport, const int v6)
{
	__u32 acc = 0;
	acc = diff_addr(acc, &f->saddr, saddr, v6);
	acc = diff_addr(acc, &f->daddr, daddr, v6);
	// The node routes these packets: TTL / hop limit go down by one (the caller passed
	// those at 1 to the stack, which answers them).
	if (v6) {
		__builtin_memcpy(&h->ip6->saddr, saddr, 16);
		__builtin_memcpy(&h->ip6->daddr, daddr, 16);
		h->ip6->hop_limit--;
	} else {
		__u16 *ttlw = (__u16 *)&h->ip4->ttl;
		__u16 old = *ttlw;
		h->ip4->saddr = saddr->w[0];
		h->ip4->daddr = daddr->w[0];
		h->ip4->ttl--;
		csum_apply(&h->ip4->check, diff16(acc, old, *ttlw));
	}
	acc = diff16(acc, f->sport, sport);
	acc = diff16(acc, f->dport, dport);
	*h->sport = sport;
	*h->dport = dport;
	if (h->l4csum) {
		csum_apply(h->l4csum, acc);
		if (h->udp && *h->l4csum == 0)
			*h->l4csum = 0xffff;
	}
}

// set_macs writes the 12 bytes of destination then source MAC, kept in that order in the
// map values, with two word stores (the Ethernet header is packed: field copies compile
// to 24 byte loads and stores). Unaligned access is fine for XDP on x86.
static __always_inline void set_macs(void *eth, const void *dst_src)
{
	*(__u64 *)eth = *(const __u64 *)dst_src;
	*(__u32 *)(eth + 8) = *(const __u32 *)(dst_src + 8);
}

static __always_inline int xmit(struct xdp_md *ctx, __u32 ifindex)
{
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, 0);
}

// parse fills f and h; returns REASON_NONE to go on, else why the packet is left alone
// (passed to the stack). Anything not plainly TCP/UDP over IPv4 without options or IPv6
// without extension headers (fragments included) is passed to the stack, which owns
// validation and reassembly. So is a packet whose length fields disagree with its headers
// or its frame: an IP length past the frame (truncated) or too short for the headers, a
// TCP data offset under 5 words or past the IP length, a UDP length under 8 or past it.
// The verifier only makes sure that we read inside the frame; these checks make sure that
// what we read and rewrite are the packet's own headers, which the backend will see too,
// and not Ethernet padding or a length the stack would reject (DSR's outer header takes
// its length from the inner one). The addresses are read first, so that parse_pass can
// tell whether a packet it refuses was for a service. The caller has checked the Ethernet
// header and its type: v6 is a constant, so each family gets code of its own.
static __always_inline int parse(struct xdp_md *ctx, struct flow *f, struct hdrs *h, const int v6)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l4;
	__u32 l4len; // the bytes after the IP header, by the IP length field

	if ((void *)(eth + 1) > data_end)
		return REASON_MALFORMED;
	h->eth = eth;
	if (!v6) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return REASON_MALFORMED; // no address: not counted
		f->family = 4;
		f->saddr.w[0] = ip->saddr;
		f->daddr.w[0] = ip->daddr;
		if (ip->version != 4)
			return REASON_MALFORMED;
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return REASON_FRAGMENT;
		if (ip->ihl != 5)
			return ip->ihl > 5 ? REASON_IP_OPTIONS : REASON_MALFORMED;
		// The length field, not the frame, says where the packet ends: the frame may
		// carry Ethernet padding after it.
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (tot < sizeof(*ip) || (void *)ip + tot > data_end)
			return REASON_MALFORMED;
		l4len = tot - sizeof(*ip);
		f->proto = ip->protocol;
		f->ttl = ip->ttl;
		h->ip4 = ip;
		l4 = ip + 1;
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return REASON_MALFORMED;
		f->family = 6;
		__builtin_memcpy(&f->saddr, &ip6->saddr, 16);
		__builtin_memcpy(&f->daddr, &ip6->daddr, 16);
		if (ip6->version != 6)
			return REASON_MALFORMED;
		l4len = bpf_ntohs(ip6->payload_len); // 0 for a jumbogram, which has extension headers
		if ((void *)(ip6 + 1) + l4len > data_end)
			return REASON_MALFORMED;
		f->proto = ip6->nexthdr;
		f->ttl = ip6->hop_limit;
		h->ip6 = ip6;
		l4 = ip6 + 1;
	}
	if (f->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return REASON_MALFORMED;
		if (tcp->doff < 5 || tcp->doff * 4 > l4len)
			return REASON_MALFORMED;
		h->sport = &tcp->source;
		h->dport = &tcp->dest;
		h->l4csum = &tcp->check;
		h->tcp = tcp;
		f->tcpflags = ((__u8 *)tcp)[13];
	} else if (f->proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end)
			return REASON_MALFORMED;
		__u32 ulen = bpf_ntohs(udp->len);
		if (ulen < sizeof(*udp) || ulen > l4len)
			return REASON_MALFORMED;
		h->sport = &udp->source;
		h->dport = &udp->dest;
		h->udp = 1;
		// IPv4 UDP may go without a checksum; IPv6 UDP may not.
		h->l4csum = (!v6 && udp->check == 0) ? 0 : &udp->check;
	} else if (v6 && f->proto == IPPROTO_FRAGMENT) {
		return REASON_FRAGMENT;
	} else if (v6 && (f->proto == IPPROTO_HOPOPTS || f->proto == IPPROTO_ROUTING ||
			  f->proto == IPPROTO_DSTOPTS || f->proto == IPPROTO_AH || f->proto == IPPROTO_MH ||
			  f->proto == 139 /* HIP */ || f->proto == 140 /* Shim6 */)) {
		return REASON_IP_OPTIONS;
	} else {
		return REASON_NOT_SERVICE; // ICMP, SCTP, tunnels...: not counted, see parse_pass
	}
	f->sport = *h->sport;
	f->dport = *h->dport;
	return REASON_NONE;
}

// parse_pass passes a packet parse refused, counting it when it is for one of the
// services' addresses. Only these rare packets pay the vip_addrs lookup; other protocols
// to a VIP (ICMP, SCTP) are not counted: the stack answers them by design, and the lookup
// would be paid by every packet of an IPIP or ESP overlay.
static __always_inline int parse_pass(struct flow *f, int r)
{
	if (r == REASON_NOT_SERVICE || !f->family)
		return XDP_PASS;
	struct vip_key k = {};
	k.addr = f->daddr;
	k.family = f->family;
	if (!bpf_map_lookup_elem(&vip_addrs, &k))
		return XDP_PASS;
	return verdict(XDP_PASS, r);
}

static __always_inline int is_snat_addr(struct flow *f, const int v6)
{
	if (!v6)
		return snat4 != 0 && f->daddr.w[0] == snat4;
	return (snat6[0] | snat6[1] | snat6[2] | snat6[3]) != 0 &&
	       f->daddr.w[0] == snat6[0] && f->daddr.w[1] == snat6[1] &&
	       f->daddr.w[2] == snat6[2] && f->daddr.w[3] == snat6[3];
}

static __always_inline void set_snat_addr(union addr *a, const int v6)
{
	if (!v6) {
		a->w[0] = snat4;
	} else {
		a->w[0] = snat6[0];
		a->w[1] = snat6[1];
		a->w[2] = snat6[2];
		a->w[3] = snat6[3];
	}
}

// reverse handles a reply from a backend to one of our SNAT ports.
static __always_inline int reverse(struct xdp_md *ctx, struct flow *f, struct hdrs *h, const int v6)
{
	struct rev_key rk = {};
	struct rev_val *rv;

	rk.baddr = f->saddr;
	rk.bport = f->sport;
	rk.nport = f->dport;
	rk.proto = f->proto;
	rk.family = f->family;
	rv = bpf_map_lookup_elem(&snat_rev, &rk);
	if (!rv)
		return -1;
	// Expiring packets are the stack's to answer (ICMP time exceeded).
	if (f->ttl <= 1)
		return verdict(XDP_PASS, REASON_TTL_EXPIRED);
	// Replies keep the port's owner fresh; a FIN or RST starts its short timeout. Writes
	// at most once a tick per flow, so the entry's cache line stays shared.
	__u32 now = now_ticks();
	if (rv->seen != now)
		rv->seen = now;
	if ((f->tcpflags & (TCP_FIN | TCP_RST)) && !rv->closing)
		rv->closing = 1;
	// A SYN-ACK does not make the flow established (a SYN flood gets one for every SYN):
	// it records what the client's ACK must acknowledge, for confirm. A retransmitted
	// SYN-ACK carries the same sequence number and writes nothing.
	if ((f->tcpflags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK) && h->tcp && !rv->established) {
		__u32 seq = bpf_ntohl(h->tcp->seq);
		if (!rv->synack || rv->synack_seq != seq) {
			rv->synack_seq = seq;
			rv->synack = 1;
		}
	}
	rewrite(h, f, &rv->vip, &rv->client, rv->vport, rv->cport, v6);
	set_macs(h->eth, rv->cmac);
	return xmit(ctx, rv->ifindex);
}

static __always_inline __u32 filter_hash(struct flow *f, const int v6)
{
	__u32 a = f->daddr.w[0];
	if (v6)
		a ^= f->daddr.w[1] ^ f->daddr.w[2] ^ f->daddr.w[3];
	return fmix32(a ^ f->dport ^ ((__u32)f->proto << 16)) & 0xffff;
}

// ct4_hash is ct4_cache's index of an IPv4 flow (bench/datapath's count_probe hashes the
// same way). Not keyed: a flow that collides only goes to conntrack4.
static __always_inline __u32 ct4_hash(const struct ct4_key *k)
{
	return fmix32(k->saddr + (k->daddr ^ k->proto) * 0x9e3779b1 +
		      (k->sport | (__u32)k->dport << 16) * 0x85ebca6b);
}

static __always_inline int ct4_same(const struct ct4_slot *s, const struct ct4_key *k)
{
	return s->saddr == k->saddr && s->daddr == k->daddr &&
	       *(const __u32 *)&s->sport == *(const __u32 *)&k->sport && s->proto == k->proto;
}

// ct4_put writes v as k's entry in line l: in k's slot if it has one (so that no older
// value of k stays), else in a free one, else in one not hit since the line last needed
// room. When all were hit, it clears their marks and leaves k to conntrack4 (second
// chance): four flows cycling through one line would otherwise evict each other on every
// packet, where this keeps three of them hitting.
static __always_inline void ct4_put(struct ct4_line *l, const struct ct4_key *k, const struct ct_val *v)
{
	__u32 epoch = ct_epoch;
	if (l->epoch != epoch) {
		l->s[0].proto = l->s[1].proto = l->s[2].proto = 0;
		l->epoch = epoch;
	}
	struct ct4_slot n = {
		.saddr = k->saddr, .daddr = k->daddr, .sport = k->sport, .dport = k->dport,
		.proto = k->proto, .flags = (v->mode & CT4_MODE) | (v->settled ? CT4_SETTLED : 0),
		.backend = v->backend, .gen = v->gen, .nat_port = v->nat_port,
	};
	struct ct4_slot *s0 = &l->s[0], *s1 = &l->s[1], *s2 = &l->s[2];
	if (ct4_same(s0, k))
		*s0 = n;
	else if (ct4_same(s1, k))
		*s1 = n;
	else if (ct4_same(s2, k))
		*s2 = n;
	else if (!s0->proto)
		*s0 = n;
	else if (!s1->proto)
		*s1 = n;
	else if (!s2->proto)
		*s2 = n;
	else if (!(s0->flags & CT4_REF))
		*s0 = n;
	else if (!(s1->flags & CT4_REF))
		*s1 = n;
	else if (!(s2->flags & CT4_REF))
		*s2 = n;
	else {
		s0->flags &= ~CT4_REF;
		s1->flags &= ~CT4_REF;
		s2->flags &= ~CT4_REF;
	}
}

// ct_store records a new flow in conntrack, and for IPv4 in this CPU's ct4_cache line l.
// Replacing an IPv4 entry that is still honoured with another value (a SYN on an existing
// flow's addresses and ports, after its backend or its port changed) bumps ct_epoch:
// other CPUs may cache the old value.
static __always_inline void ct_store(void *ctmap, void *ck, struct ct_val *nc, struct ct4_line *l, const int v6)
{
	if (v6) {
		bpf_map_update_elem(ctmap, ck, nc, BPF_ANY);
		return;
	}
	if (bpf_map_update_elem(&conntrack4, ck, nc, BPF_NOEXIST)) {
		struct ct_val *old = bpf_map_lookup_elem(&conntrack4, ck);
		if (old && (old->backend != nc->backend || old->gen != nc->gen ||
			    old->nat_port != nc->nat_port || old->mode != nc->mode)) {
			// Only a value still honoured anywhere: one whose backend slot has moved
			// on is refused by every CPU's cache too.
			__u32 ob = old->backend;
			struct backend *obe = bpf_map_lookup_elem(&backends, &ob);
			if (obe && obe->gen == old->gen)
				__sync_fetch_and_add(&ct_epoch, 1);
		}
		bpf_map_update_elem(&conntrack4, ck, nc, BPF_ANY);
	}
	if (l)
		ct4_put(l, ck, nc);
}

static __always_inline __u32 flow_hash(struct flow *f)
{
	__u32 a = f->saddr.w[0] ^ f->saddr.w[1] ^ f->saddr.w[2] ^ f->saddr.w[3];
	return fmix32(fmix32(a) ^ (((__u32)f->sport << 16) | f->proto));
}

// encap prepends an outer IPv4 (IPIP) or IPv6 (IP6IP6) header for DSR.
static __always_inline int encap(struct xdp_md *ctx, struct flow *f, struct backend *be, const int v6)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (!v6) {
		struct iphdr *inner = data + sizeof(struct ethhdr);
		if ((void *)(inner + 1) > data_end)
			return verdict(XDP_DROP, REASON_ENCAP_FAILED);
		// parse checked that the packet fits its frame, so the outer length cannot wrap.
		__u16 tot = bpf_ntohs(inner->tot_len);
		__u16 vtos = *(__u16 *)inner; // version, IHL and TOS: 4, 5 (checked) and the inner TOS
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
			return verdict(XDP_DROP, REASON_ENCAP_FAILED);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		struct ethhdr *eth = data;
		struct iphdr *ip = data + sizeof(*eth);
		if ((void *)(ip + 1) > data_end)
			return verdict(XDP_DROP, REASON_ENCAP_FAILED);
		set_macs(eth, be->dmac);
		*(__be16 *)((void *)eth + 12) = bpf_htons(ETH_P_IP);
		// The header as 32-bit words, its checksum summed from the values written
		// (the sum of 16-bit words does not depend on byte order).
		__u32 *w = (void *)ip;
		__u16 tl = bpf_htons(tot + sizeof(struct iphdr));
		__u16 ttlp = 64 | (IPPROTO_IPIP << 8); // ttl, protocol in memory order
		__u32 sa = snat4, da = be->addr.w[0];
		__u32 acc = (__u32)vtos + tl + ttlp + (sa & 0xffff) + (sa >> 16) + (da & 0xffff) + (da >> 16);
		__u16 check = (__u16)~csum_fold_acc(acc);
		w[0] = vtos | ((__u32)tl << 16);
		w[1] = 0; // id, frag_off
		w[2] = ttlp | ((__u32)check << 16);
		w[3] = sa;
		w[4] = da;
	} else {
		struct ipv6hdr *inner = data + sizeof(struct ethhdr);
		if ((void *)(inner + 1) > data_end)
			return verdict(XDP_DROP, REASON_ENCAP_FAILED);
		__u16 plen = bpf_ntohs(inner->payload_len); // fits its frame (parse): no wrap below
		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ipv6hdr)))
			return verdict(XDP_DROP, REASON_ENCAP_FAILED);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		struct ethhdr *eth = data;
		struct ipv6hdr *ip6 = data + sizeof(*eth);
		if ((void *)(ip6 + 1) > data_end)
			return verdict(XDP_DROP, REASON_ENCAP_FAILED);
		set_macs(eth, be->dmac);
		*(__be16 *)((void *)eth + 12) = bpf_htons(ETH_P_IPV6);
		*(__u32 *)ip6 = bpf_htonl(0x60000000);
		ip6->payload_len = bpf_htons(plen + sizeof(struct ipv6hdr));
		ip6->nexthdr = IPPROTO_IPV6;
		ip6->hop_limit = 64;
		union addr src;
		set_snat_addr(&src, 1);
		__builtin_memcpy(&ip6->saddr, &src, 16);
		__builtin_memcpy(&ip6->daddr, &be->addr, 16);
	}
	return xmit(ctx, be->ifindex);
}

// same_flow says whether rv, a reverse entry, belongs to f's client flow: the same client
// address and port, VIP and port. Whole addresses: two IPv6 VIPs may differ in their
// middle words only, and a flow to each from one client port must not share a SNAT port.
static __always_inline int same_flow(const struct rev_val *rv, const struct flow *f, const int v6)
{
	if (rv->cport != f->sport || rv->vport != f->dport || rv->client.w[0] != f->saddr.w[0] ||
	    rv->vip.w[0] != f->daddr.w[0])
		return 0;
	if (!v6)
		return 1; // the other words are zero on both sides
	return rv->client.w[1] == f->saddr.w[1] && rv->client.w[2] == f->saddr.w[2] &&
	       rv->client.w[3] == f->saddr.w[3] && rv->vip.w[1] == f->daddr.w[1] &&
	       rv->vip.w[2] == f->daddr.w[2] && rv->vip.w[3] == f->daddr.w[3];
}

// How far past the backend's SYN the client's ACK that completes the handshake may
// acknowledge: exactly its SYN-ACK, or data the backend sent right after it (TCP Fast
// Open), up to 64 KiB. A blind guess of an ACK hits with odds 2^-16.
#define SYNACK_ACK_WINDOW 65536

// confirm is the forward path's part in a TCP SNAT flow's state, called for a client ACK
// (without SYN) of a flow in conntrack until ct->settled: the flow is established, and
// its port gets snat_idle_tcp, once the client has ACKed the backend's SYN-ACK. Returns
// whether the flow is settled. Replies
// alone cannot say so: a backend answers every SYN, and SYNs that never complete would
// hold its ports for hours. An ACK before the SYN-ACK, or one that does not acknowledge
// it, is not the handshake's end (the backend drops it or answers with a RST). Once the
// flow is established, or its port has gone to another flow, ct->settled stops the
// lookups: a flow pays one snat_rev lookup and at most one write on each entry.
static __always_inline int confirm(struct flow *f, struct hdrs *h, struct backend *be, __be16 nport,
				   const int v6)
{
	struct rev_key rk = {};

	rk.baddr = be->addr;
	rk.bport = be->port;
	rk.nport = nport;
	rk.proto = f->proto;
	rk.family = f->family;
	struct rev_val *rv = bpf_map_lookup_elem(&snat_rev, &rk);
	if (!rv || !same_flow(rv, f, v6))
		return 1; // the port went to another flow: nothing of ours to record
	if (rv->established)
		return 1;
	if (!rv->synack || !h->tcp)
		return 0;
	if (bpf_ntohl(h->tcp->ack_seq) - rv->synack_seq - 1 >= SYNACK_ACK_WINDOW)
		return 0;
	rv->established = 1;
	return 1;
}

// snat_port picks a node port for a new SNAT flow and records the reverse entry. Returns 0
// when every probed port is taken.
static __always_inline __be16 snat_port(struct xdp_md *ctx, struct flow *f, struct backend *be,
					__u32 hash, const int v6)
{
	struct rev_key rk = {};
	struct rev_val rv = {};
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	__u32 range = (__u32)snat_port_max - snat_port_min + 1;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return 0;
	rk.baddr = be->addr;
	rk.bport = be->port;
	rk.proto = f->proto;
	rk.family = f->family;
	rv.client = f->saddr;
	rv.vip = f->daddr;
	rv.cport = f->sport;
	rv.vport = f->dport;
	rv.ifindex = ctx->ingress_ifindex;
	__builtin_memcpy(rv.cmac, eth->h_source, 6);
	__builtin_memcpy(rv.nmac, eth->h_dest, 6);
	rv.seen = now_ticks();

	__u32 start = fmix32(hash ^ f->dport);
#pragma unroll
	for (int i = 0; i < 8; i++) {
		__be16 port = bpf_htons((__u16)(snat_port_min + (start + i * 7919) % range));
		rk.nport = port;
		if (bpf_map_update_elem(&snat_rev, &rk, &rv, BPF_NOEXIST) == 0)
			return port;
		struct rev_val *old = bpf_map_lookup_elem(&snat_rev, &rk);
		if (!old)
			continue;
		// The same client flow (a SYN again, or its conntrack entry was evicted first):
		// keep its port. Or the port's flow is over: closed by the backend, or idle past
		// its protocol's timeout: take the port.
		__u32 idle = rv.seen - old->seen;
		__u32 limit = snat_idle_other;
		if (old->closing)
			limit = snat_idle_closed;
		else if (old->established)
			limit = snat_idle_tcp;
		int same = same_flow(old, f, v6);
		if (same && !(f->tcpflags & TCP_SYN)) {
			// The flow goes on after an eviction from conntrack: its handshake is still
			// done (no second SYN-ACK will say so). A SYN starts a connection over.
			rv.synack_seq = old->synack_seq;
			rv.synack = old->synack;
			rv.established = old->established;
			rv.closing = old->closing;
		}
		if (same || idle > limit) {
			bpf_map_update_elem(&snat_rev, &rk, &rv, BPF_EXIST);
			return port;
		}
	}
	return 0;
}

static __always_inline int lb(struct xdp_md *ctx, const int v6)
{
	struct flow f = {};
	struct hdrs h = {};
	int ret = parse(ctx, &f, &h, v6);
	if (ret)
		return parse_pass(&f, ret);

	// A packet to the SNAT address and port range that is no flow's reply is counted
	// (snat-no-flow) once it turns out to be for no service either.
	int snat_miss = 0;
	if (is_snat_addr(&f, v6)) {
		__u16 p = bpf_ntohs(f.dport);
		if (p >= snat_port_min && p <= snat_port_max) {
			ret = reverse(ctx, &f, &h, v6);
			if (ret >= 0)
				return ret;
			snat_miss = 1;
		}
	}

	__u32 bit = filter_hash(&f, v6);
	__u32 word = bit >> 6;
	__u64 *fw = bpf_map_lookup_elem(&vip_filter, &word);
	if (!fw || !(*fw & (1ULL << (bit & 63))))
		return snat_miss ? verdict(XDP_PASS, REASON_SNAT_NO_FLOW) : XDP_PASS;

	// Conntrack first: an established flow needs neither the service nor the table. The
	// generation check drops entries whose backend slot was reused or whose service was
	// removed (userspace clears the generation of its backends then). With v6 constant
	// each lookup names one map, so the verifier inlines it (a lookup site that sees two
	// maps goes through the generic helper and an indirect call).
	struct ct_key ck6;
	struct ct4_key ck4;
	void *ctmap, *ck;
	if (!v6) {
		__builtin_memset(&ck4, 0, sizeof(ck4));
		ck4.saddr = f.saddr.w[0];
		ck4.daddr = f.daddr.w[0];
		ck4.sport = f.sport;
		ck4.dport = f.dport;
		ck4.proto = f.proto;
		ctmap = &conntrack4;
		ck = &ck4;
	} else {
		__builtin_memset(&ck6, 0, sizeof(ck6));
		ck6.saddr = f.saddr;
		ck6.daddr = f.daddr;
		ck6.sport = f.sport;
		ck6.dport = f.dport;
		ck6.proto = f.proto;
		ctmap = &conntrack6;
		ck = &ck6;
	}

	struct backend *be = NULL;
	__u32 bid = 0;
	__be16 nport = 0;
	__u8 mode = 0;
	// The flow's entry, for confirm: in conntrack or in this CPU's ct4_cache line.
	struct ct_val *ct = NULL;
	struct ct4_slot *cs = NULL;
	int known = 0, settled = 0; // known: the flow is in conntrack (or the cache)
	// IPv4: this CPU's line of ct4_cache (see there).
	struct ct4_line *cl = NULL;
	if (!v6) {
		__u32 li = bpf_get_smp_processor_id() * ct4_cache_lines + (ct4_hash(&ck4) & (ct4_cache_lines - 1));
		cl = bpf_map_lookup_elem(&ct4_cache, &li);
	}
	// A TCP SYN starts a flow: it takes the new-flow path even when conntrack still holds
	// an entry of the same addresses and ports (the client reused its port), so that its
	// SNAT port is checked again. A retransmitted SYN gets the same backend and port.
	if ((f.tcpflags & (TCP_SYN | TCP_ACK)) != TCP_SYN) {
		if (cl && cl->epoch == ct_epoch) {
			if (ct4_same(&cl->s[0], &ck4))
				cs = &cl->s[0];
			else if (ct4_same(&cl->s[1], &ck4))
				cs = &cl->s[1];
			else if (ct4_same(&cl->s[2], &ck4))
				cs = &cl->s[2];
		}
		if (cs) {
			bid = cs->backend;
			be = bpf_map_lookup_elem(&backends, &bid);
			if (be && (__u16)be->gen != cs->gen)
				be = NULL;
			nport = cs->nat_port;
			mode = cs->flags & CT4_MODE;
			settled = cs->flags & CT4_SETTLED;
			known = 1;
			cs->flags += CT4_HIT;
			cs->flags |= CT4_REF;
			if (be && cs->flags < CT4_HIT) {
				// Every 16th hit: keep the LRU's entry (written back if evicted).
				struct ct_val cv = {.backend = bid, .gen = be->gen, .nat_port = nport,
						    .mode = mode, .settled = !!settled};
				if (!bpf_map_lookup_elem(&conntrack4, &ck4))
					bpf_map_update_elem(&conntrack4, &ck4, &cv, BPF_NOEXIST);
			}
		} else {
			ct = bpf_map_lookup_elem(ctmap, ck);
			if (ct) {
				bid = ct->backend;
				be = bpf_map_lookup_elem(&backends, &bid);
				if (be && be->gen != ct->gen)
					be = NULL;
				nport = ct->nat_port;
				mode = ct->mode;
				settled = ct->settled;
				known = 1;
				if (cl && be)
					ct4_put(cl, &ck4, ct);
			}
		}
	}
	if (!be) {
		known = 0;
		struct svc_key sk = {};
		sk.vip = f.daddr;
		sk.port = f.dport;
		sk.proto = f.proto;
		sk.family = f.family;
		struct svc_val *svc = bpf_map_lookup_elem(&services, &sk);
		if (!svc)
			return snat_miss ? verdict(XDP_PASS, REASON_SNAT_NO_FLOW) : XDP_PASS;
		// Expiring packets are the stack's to answer (ICMP time exceeded). Checked only
		// here and for flows in conntrack, not for every packet: what is not ours is not
		// counted.
		if (f.ttl <= 1)
			return verdict(XDP_PASS, REASON_TTL_EXPIRED);
		__u32 svc_id = svc->id;
		mode = svc->mode;
		__u32 hash = flow_hash(&f);
		struct aff_key ak;
		struct aff_val *av = NULL;
		__u64 now = 0;
		if (svc->affinity_ns) {
			__builtin_memset(&ak, 0, sizeof(ak));
			ak.client = f.saddr;
			ak.svc_id = svc_id;
			now = bpf_ktime_get_ns();
			av = bpf_map_lookup_elem(&affinity, &ak);
			if (av && now - av->ts < svc->affinity_ns) {
				bid = av->backend;
				be = bpf_map_lookup_elem(&backends, &bid);
				if (be && (be->gen != av->gen || be->svc_id != svc_id))
					be = NULL;
			}
		}
		if (!be) {
			// A service without backends has no table and size 0 (userspace keeps it
			// so that its packets are counted here).
			void *inner = bpf_map_lookup_elem(&maglev_outer, &svc_id);
			if (!inner)
				return verdict(XDP_PASS, REASON_NO_BACKEND);
			__u32 size = svc->size;
			if (!size)
				return verdict(XDP_PASS, REASON_NO_BACKEND);
			__u32 idx = hash % size;
			__u32 *b = bpf_map_lookup_elem(inner, &idx);
			if (!b)
				return verdict(XDP_PASS, REASON_NO_BACKEND);
			bid = *b;
			be = bpf_map_lookup_elem(&backends, &bid);
			if (!be || be->svc_id != svc_id)
				return verdict(XDP_PASS, REASON_NO_BACKEND);
		}
		if (be->flags & BE_STACK) {
			// Remembered, so the flow stays with the stack when the table changes.
			struct ct_val nc = {.backend = bid, .gen = be->gen, .mode = MODE_STACK};
			ct_store(ctmap, ck, &nc, cl, v6);
			return verdict(XDP_PASS, REASON_STACK_ENDPOINT);
		}
		if (!(be->flags & BE_NEXTHOP))
			return verdict(XDP_PASS, REASON_NO_NEXTHOP);
		if (svc->affinity_ns) {
			struct aff_val nv = {.backend = bid, .gen = be->gen, .ts = now};
			bpf_map_update_elem(&affinity, &ak, &nv, BPF_ANY);
		}
		nport = 0;
		if (mode == MODE_SNAT) {
			nport = snat_port(ctx, &f, be, hash, v6);
			if (!nport)
				return verdict(XDP_DROP, REASON_SNAT_PORTS_EXHAUSTED);
		}
		struct ct_val nc = {.backend = bid, .gen = be->gen, .nat_port = nport, .mode = mode};
		ct_store(ctmap, ck, &nc, cl, v6);
	} else if (f.ttl <= 1) {
		return verdict(XDP_PASS, REASON_TTL_EXPIRED);
	}
	if (mode == MODE_STACK)
		return verdict(XDP_PASS, REASON_STACK_ENDPOINT);
	if (!(be->flags & BE_NEXTHOP))
		return verdict(XDP_PASS, REASON_NO_NEXTHOP);
	// Flags first: UDP has none, and an established TCP flow's ACKs stop at ct->settled.
	if ((f.tcpflags & (TCP_SYN | TCP_ACK)) == TCP_ACK && known && !settled && mode == MODE_SNAT &&
	    confirm(&f, &h, be, nport, v6)) {
		if (cs)
			cs->flags |= CT4_SETTLED;
		else if (ct)
			ct->settled = 1;
	}

	__u64 bytes = ctx->data_end - ctx->data;
	// Per backend slot only; userspace sums a service's slots for its total.
	count(&be_stats, bid, bytes);

	if (mode == MODE_DSR)
		return encap(ctx, &f, be, v6);

	union addr src = {};
	set_snat_addr(&src, v6);
	rewrite(&h, &f, &src, &be->addr, nport, be->port, v6);
	set_macs(h.eth, be->dmac);
	return xmit(ctx, be->ifindex);
}

// lb_eth dispatches on the Ethernet type to a copy of lb specialized for the family.
static __always_inline int lb_eth(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return XDP_PASS;
	__be16 proto = *(__be16 *)(data + 12); // h_proto: ethhdr is packed
	if (proto == bpf_htons(ETH_P_IP))
		return lb(ctx, 0);
	if (proto == bpf_htons(ETH_P_IPV6))
		return lb(ctx, 1);
	return XDP_PASS;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	return lb_eth(ctx);
}

// xdp_decap runs on backends: it strips the outer IPIP / IP6IP6 header of DSR packets so
// the stack sees the client's packet to the VIP (held on lo). This kernel has no ipip
// device; with one, this program is not needed.
SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	int hl;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		if (ip->protocol != IPPROTO_IPIP || ip->ihl != 5 ||
		    (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
			return XDP_PASS;
		hl = sizeof(struct iphdr);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		if (ip6->nexthdr != IPPROTO_IPV6)
			return XDP_PASS;
		hl = sizeof(struct ipv6hdr);
	} else {
		return XDP_PASS;
	}
	// Move the Ethernet header forward over the outer IP header, then drop the front.
	struct ethhdr *neth = data + hl;
	if ((void *)(neth + 1) > data_end)
		return XDP_PASS;
	struct ethhdr tmp;
	__builtin_memcpy(&tmp, eth, sizeof(tmp));
	__builtin_memcpy(neth, &tmp, sizeof(tmp));
	if (bpf_xdp_adjust_head(ctx, hl))
		return XDP_DROP;
	return XDP_PASS;
}

// xdp_drop is the baseline of the benchmark.
SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char __license[] SEC("license") = "Dual BSD/GPL";

// Benchmark support, never attached: BPF_PROG_TEST_RUN in live-frame mode recycles frames
// without restoring their contents, so a program that rewrites the packet would see its
// own output on the next run. These programs first copy a 64-byte template frame back,
// then run the load balancer (or nothing, to measure the copy alone).
struct bench_frame {
	__u8 data[64];
	__u32 flows; // > 1: each run takes the next of this many flows (a power of two)
	__u32 n;     // runs so far
	__u32 lines; // xdp_probe_bench: entries in bench_lines (a power of two)
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_frame);
} bench_tmpl SEC(".maps");

// bench_restore copies the template back. With flows > 1 it adds the flow's number to the
// source port, visiting the flows in a scattered order (an odd multiplier permutes the
// powers of two), as many clients would: consecutive packets share no cache lines.
static __always_inline int bench_restore(struct xdp_md *ctx)
{
	__u32 k = 0;
	struct bench_frame *t = bpf_map_lookup_elem(&bench_tmpl, &k);
	void *data = (void *)(long)ctx->data;
	if (!t || data + sizeof(t->data) > (void *)(long)ctx->data_end)
		return -1;
	__builtin_memcpy(data, t->data, sizeof(t->data));
	if (t->flows > 1) {
		__u32 i = (t->n++ * 2654435761u) & (t->flows - 1);
		__u32 off = ((struct ethhdr *)data)->h_proto == bpf_htons(ETH_P_IPV6) ?
			sizeof(struct ethhdr) + sizeof(struct ipv6hdr) :
			sizeof(struct ethhdr) + sizeof(struct iphdr);
		if (off > 62)
			return -1;
		__be16 *sport = data + off;
		*sport = bpf_htons(bpf_ntohs(*sport) + (__u16)i);
	}
	return 0;
}

SEC("xdp")
int xdp_lb_bench(struct xdp_md *ctx)
{
	if (bench_restore(ctx))
		return XDP_ABORTED;
	return lb_eth(ctx);
}

// bench_lines is the memory xdp_probe_bench reads: one entry here, sized by the benchmark.
struct bench_line {
	__u64 v[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_line);
} bench_lines SEC(".maps");

// xdp_probe_bench restores the frame and reads one cache line per flow, at a hashed
// place in bench_lines: what a single memory access per flow costs with this many flows.
SEC("xdp")
int xdp_probe_bench(struct xdp_md *ctx)
{
	__u32 k = 0;
	if (bench_restore(ctx))
		return XDP_ABORTED;
	struct bench_frame *t = bpf_map_lookup_elem(&bench_tmpl, &k);
	if (!t)
		return XDP_ABORTED;
	k = fmix32(((t->n - 1) * 2654435761u) & (t->flows - 1)) & (t->lines - 1);
	struct bench_line *l = bpf_map_lookup_elem(&bench_lines, &k);
	if (l && l->v[0] == 1)
		return XDP_PASS;
	return XDP_DROP;
}

SEC("xdp")
int xdp_restore_bench(struct xdp_md *ctx)
{
	if (bench_restore(ctx))
		return XDP_ABORTED;
	return XDP_DROP;
}
