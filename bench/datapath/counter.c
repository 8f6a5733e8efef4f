//go:build ignore

// count_drop counts every packet (per-CPU) and drops it: the node's drop-only ceiling.
// count_backend does the same at a backend, and also counts the packets addressed to the
// backend itself (DNAT/SNAT done) and the IPIP packets (DSR), so the benchmark can check
// that what arrives is what each mode should deliver. count_tc counts (and drops) in tcx
// ingress, after an XDP program on the same link (FerroLB's decapsulation) passed the packet
// on, and counts those addressed to a service address (198.18.0.0/16) too.
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

char LICENSE[] SEC("license") = "GPL";
