/* source_guard: anti-spoofing for a pod, at the host end's tcx ingress (what the pod sends). An
 * IPv4 packet whose source is not the pod's own address is dropped and recorded; everything else
 * (the pod's own packets, ARP, IPv6) goes on.
 *
 * Both globals are `const volatile` (.rodata, set per instance before load), declared in the
 * spec as references, so they stay true without anyone copying numbers:
 *   pod_addr: {address: eth0, namespace: pod-a}     the one IPv4 address the spec gives the
 *                                                   pod's end (network order, as in the header)
 *   pod_netns_cookie: {netns_cookie: pod-a}         the kernel's 64-bit id of the pod's
 *                                                   namespace, known only once it exists
 * The cookie tells whoever reads `last_spoof` which pod sent the packet, as Cilium's endpoint
 * events do (a cookie, unlike a name, is never reused while the machine runs).
 *
 * Maps: `spoofed` (key 0: how many packets were dropped) and `last_spoof` (key 0: the namespace
 * cookie and the source of the last one). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "returns.h"

const volatile __be32 pod_addr = 0;
const volatile __u64 pod_netns_cookie = 0;

struct spoof {
	__u64 netns_cookie;
	__be32 saddr;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} spoofed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct spoof);
} last_spoof SEC(".maps");

SEC("tc")
int source_guard(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct spoof *last;
	__u32 key = 0;
	__u64 *n;

	if (!pod_addr || (void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NK_NEXT;
	if (ip->saddr == pod_addr)
		return NK_NEXT;
	n = bpf_map_lookup_elem(&spoofed, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	last = bpf_map_lookup_elem(&last_spoof, &key);
	if (last) {
		last->netns_cookie = pod_netns_cookie;
		last->saddr = ip->saddr;
	}
	return NK_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
