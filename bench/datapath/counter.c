//go:build ignore

// count_drop counts every packet (per-CPU) and drops it: the node's drop-only ceiling.
// count_backend does the same at a backend, and also counts the packets addressed to the
// backend itself (DNAT/SNAT done) and the IPIP packets (DSR), so the benchmark can check
// that what arrives is what each mode should deliver. count_tc counts (and drops) in tcx
// ingress, after an XDP program on the same link (FerroLB's decapsulation) passed the packet
// on, and counts those addressed to a service address (198.18.0.0/16) too. count_probe is
// the floor of any conntrack: drop-only plus one cache-line read per flow (see below).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

enum { ALL, TO_BACKEND, IPIP, TO_VIP, NKEYS };

#define TC_ACT_SHOT 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NKEYS);
	__type(key, __u32);
	__type(value, __u64);
} packets SEC(".maps");

// The backend's address, network order; set before loading.
volatile const __u32 backend_addr = 0;

static __always_inline void count(__u32 key)
{
	__u64 *n = bpf_map_lookup_elem(&packets, &key);

	if (n)
		(*n)++;
}

SEC("xdp")
int count_drop(struct xdp_md *ctx)
{
	count(ALL);
	return XDP_DROP;
}

SEC("xdp")
int count_backend(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	count(ALL);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_DROP;
	if (ip->protocol == IPPROTO_IPIP)
		count(IPIP);
	else if (ip->daddr == backend_addr)
		count(TO_BACKEND);
	return XDP_DROP;
}

SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	count(ALL);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_SHOT;
	if ((ip->daddr & bpf_htonl(0xffff0000)) == bpf_htonl(0xc6120000))
		count(TO_VIP);
	return TC_ACT_SHOT;
}

// probe_lines is as large as the table an IPv4 conntrack reads per packet: 65,536 lines of
// 64 bytes, 4 MB, the size of conntrack4's LRU bucket array (262,144 buckets of 16 bytes) and
// of each CPU's part of FerroLB's flow cache (ct4_cache in lb.c) on 2 CPUs. BPF_F_MMAPABLE,
// like ct4_cache, so that each 64-byte value is one cache line (a plain array's values start
// 56 bytes into a line).
#define PROBE_LINES 65536

struct line {
	__u64 v[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROBE_LINES);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct line);
} probe_lines SEC(".maps");

static __always_inline __u32 fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

// count_probe does what count_drop does, plus what any conntrack lookup must do for an IPv4
// UDP/TCP packet: read the 5-tuple (bounds-checked Ethernet, IPv4 and port headers), hash
// it (the same hash as ct4_hash in lb.c) and read one 64-byte line at that index, comparing
// its first word with the addresses (a read whose value is used, so it is not skipped). It
// never matches: the packet is dropped. Anything else is counted and dropped unread.
SEC("xdp")
int count_probe(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u16 *ports = (void *)(ip + 1);

	count(ALL);
	if ((void *)(ports + 2) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5)
		return XDP_DROP;
	__u32 h = fmix32(ip->saddr + (ip->daddr ^ ip->protocol) * 0x9e3779b1 +
			 (ports[0] | (__u32)ports[1] << 16) * 0x85ebca6b);
	__u32 k = h & (PROBE_LINES - 1);
	struct line *l = bpf_map_lookup_elem(&probe_lines, &k);
	if (l && l->v[0] == (ip->saddr | (__u64)ip->daddr << 32))
		return XDP_PASS;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
