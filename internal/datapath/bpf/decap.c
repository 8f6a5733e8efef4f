// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// FerroLB's DSR decapsulator: the backend nodes' side of DSR (../doc.go, "DSR").
// A tcx ingress program, so it runs after the node's XDP program (xdp_lb passes IPIP to
// the stack) and beside any other tcx program. It strips the outer IPIP / IP6IP6 header
// of a packet only when the speaker allowed that exact pair: the outer destination (a
// backend on this node) and the inner destination address, port and protocol (the
// Service it is an endpoint of). Everything else goes on untouched: an attacker's tunnel
// packet to an internal address stays a tunnel packet, which the stack drops (no ipip
// device) or hands to whatever tunnel the node has.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Newer than this system's uapi headers (kernel 6.3 and 6.6).
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif
#define TCX_NEXT (-1) // go on to the next tcx program, then the stack

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

union addr {
	__u32 w[4];
	__u8 b[16];
};

// One allowed pair; addresses in network order, IPv4 in the first word.
struct decap_key {
	union addr outer; // outer destination: a backend on this node
	union addr vip;   // inner destination: the Service's address
	__be16 port;      // inner destination port
	__u8 proto;       // inner protocol, TCP or UDP
	__u8 family;      // 4 or 6
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct decap_key);
	__type(value, __u8);
} decap_allow SEC(".maps");

// Counted tunnel packets (IPIP / IP6IP6 only; other traffic is not counted). Keep in step
// with DecapResult in decapsulator.go.
enum decap_result {
	DECAP_OK,          // decapsulated
	DECAP_NOT_ALLOWED, // well formed, but not a pair the speaker allowed: untouched
	DECAP_MALFORMED,   // truncated, fragmented, options, lengths that disagree, wrong inner version: untouched
	DECAP_FAILED,      // bpf_skb_adjust_room failed: untouched
	DECAP_RESULTS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DECAP_RESULTS);
	__type(key, __u32);
	__type(value, __u64);
} decap_stats SEC(".maps");

static __always_inline int count(__u32 r)
{
	__u64 *c = bpf_map_lookup_elem(&decap_stats, &r);
	if (c)
		*c += 1;
	return TCX_NEXT;
}

// The inner transport header's destination port, if the ports are inside the packet.
static __always_inline int inner_port(void *l4, void *data_end, __u8 proto, __be16 *port)
{
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -1;
	if (l4 + 4 > data_end)
		return -1;
	*port = *(__be16 *)(l4 + 2);
	return 0;
}

// The outer plus inner IP headers plus the inner ports: what must be in the linear part.
#define NEED4 (sizeof(struct ethhdr) + 2 * sizeof(struct iphdr) + 4)
#define NEED6 (sizeof(struct ethhdr) + 2 * sizeof(struct ipv6hdr) + 4)

static __always_inline int decap4(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);

	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_IPIP)
		return TCX_NEXT; // not a tunnel packet: the common case, uncounted
	if (data + NEED4 > data_end) {
		// Not all in the linear part (or truncated): pull, then look again.
		if (skb->len < NEED4 || bpf_skb_pull_data(skb, NEED4))
			return count(DECAP_MALFORMED);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		ip = data + sizeof(struct ethhdr);
		if (data + NEED4 > data_end)
			return count(DECAP_MALFORMED);
	}
	struct iphdr *in = (void *)(ip + 1);
	// FerroLB's outer header has no options and is never fragmented; the balancer
	// forwards only inner packets without options or fragments.
	if (ip->version != 4 || ip->ihl != 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) ||
	    in->version != 4 || in->ihl != 5 || (in->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return count(DECAP_MALFORMED);
	__u32 outer_len = bpf_ntohs(ip->tot_len), inner_len = bpf_ntohs(in->tot_len);
	if (outer_len != inner_len + sizeof(struct iphdr) || outer_len > skb->len - sizeof(struct ethhdr) ||
	    inner_len < sizeof(struct iphdr) + 4)
		return count(DECAP_MALFORMED);
	struct decap_key k = {.family = 4, .proto = in->protocol};
	if (inner_port(in + 1, data_end, in->protocol, &k.port))
		return count(DECAP_MALFORMED);
	k.outer.w[0] = ip->daddr;
	k.vip.w[0] = in->daddr;
	if (!bpf_map_lookup_elem(&decap_allow, &k))
		return count(DECAP_NOT_ALLOWED);
	if (bpf_skb_adjust_room(skb, -(int)sizeof(struct iphdr), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4))
		return count(DECAP_FAILED);
	return count(DECAP_OK);
}

static __always_inline int decap6(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);

	if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_IPV6)
		return TCX_NEXT;
	if (data + NEED6 > data_end) {
		if (skb->len < NEED6 || bpf_skb_pull_data(skb, NEED6))
			return count(DECAP_MALFORMED);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		ip6 = data + sizeof(struct ethhdr);
		if (data + NEED6 > data_end)
			return count(DECAP_MALFORMED);
	}
	struct ipv6hdr *in = (void *)(ip6 + 1);
	// No extension headers, outside or inside: the balancer sends none and forwards
	// none.
	if (ip6->version != 6 || in->version != 6)
		return count(DECAP_MALFORMED);
	__u32 outer_len = bpf_ntohs(ip6->payload_len), inner_len = bpf_ntohs(in->payload_len);
	if (outer_len != inner_len + sizeof(struct ipv6hdr) ||
	    outer_len + sizeof(struct ipv6hdr) > skb->len - sizeof(struct ethhdr) || inner_len < 4)
		return count(DECAP_MALFORMED);
	struct decap_key k = {.family = 6, .proto = in->nexthdr};
	if (inner_port(in + 1, data_end, in->nexthdr, &k.port))
		return count(DECAP_MALFORMED);
	__builtin_memcpy(k.outer.b, &ip6->daddr, 16);
	__builtin_memcpy(k.vip.b, &in->daddr, 16);
	if (!bpf_map_lookup_elem(&decap_allow, &k))
		return count(DECAP_NOT_ALLOWED);
	if (bpf_skb_adjust_room(skb, -(int)sizeof(struct ipv6hdr), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV6))
		return count(DECAP_FAILED);
	return count(DECAP_OK);
}

SEC("tcx/ingress")
int tcx_decap(struct __sk_buff *skb)
{
	// skb->protocol is the Ethernet type the stack read; the header itself is at data.
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return decap4(skb);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return decap6(skb);
	return TCX_NEXT;
}

char __license[] SEC("license") = "Dual BSD/GPL";
