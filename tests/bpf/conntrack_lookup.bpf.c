// SPDX-License-Identifier: GPL-2.0
// The connection-tracking lookup two ways, for `cargo xtask bench --only
// conntrack` (tests/src/bench/conntrack.rs): the kernel's own conntrack
// through the `bpf_skb_ct_lookup` kfunc, and an LRU hash of our own keyed
// like netfabric's `CONNECTIONS`. Both parse the same IPv4/UDP frame the
// same way, so the difference is the lookup. C and libbpf (through
// bpftool) because aya 0.14 cannot relocate kfunc calls.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb_ctx, struct bpf_sock_tuple *bpf_tuple,
					 u32 tuple__sz, struct bpf_ct_opts *opts, u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

// netfabric_common::conntrack::ConnKey and Connection, byte for byte.
struct conn_key {
	u32 src;
	u32 dst;
	u16 src_port;
	u16 dst_port;
	u8 protocol;
	u8 pad[3];
};

struct connection {
	u64 last_seen_ns;
	u32 src_owner;
	u32 dst_owner;
	u8 state;
	u8 flags;
	u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 18);
	__type(key, struct conn_key);
	__type(value, struct connection);
} connections SEC(".maps");

// The IPv4 and UDP headers of the frame, or NULL.
static __always_inline struct iphdr *udp_frame(struct __sk_buff *skb, struct udphdr **udp)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return NULL;
	*udp = (void *)(ip + 1);
	if ((void *)(*udp + 1) > end)
		return NULL;
	return ip;
}

SEC("tc")
int ct_kfunc(struct __sk_buff *skb)
{
	struct udphdr *udp;
	struct iphdr *ip = udp_frame(skb, &udp);
	if (!ip)
		return TC_ACT_SHOT;
	struct bpf_sock_tuple tuple = {};
	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	tuple.ipv4.sport = udp->source;
	tuple.ipv4.dport = udp->dest;
	struct bpf_ct_opts opts = { .netns_id = -1, .l4proto = IPPROTO_UDP };
	struct nf_conn *ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	if (!ct)
		return TC_ACT_SHOT;
	bpf_ct_release(ct);
	return TC_ACT_OK;
}

SEC("tc")
int ct_map(struct __sk_buff *skb)
{
	struct udphdr *udp;
	struct iphdr *ip = udp_frame(skb, &udp);
	if (!ip)
		return TC_ACT_SHOT;
	struct conn_key key = {
		.src = bpf_ntohl(ip->saddr),
		.dst = bpf_ntohl(ip->daddr),
		.src_port = bpf_ntohs(udp->source),
		.dst_port = bpf_ntohs(udp->dest),
		.protocol = IPPROTO_UDP,
	};
	return bpf_map_lookup_elem(&connections, &key) ? TC_ACT_OK : TC_ACT_SHOT;
}

// The same parse and nothing else: what both lookups add to.
SEC("tc")
int ct_parse_only(struct __sk_buff *skb)
{
	struct udphdr *udp;
	return udp_frame(skb, &udp) ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
