/* pod_egress: drops ICMP echo requests (IPv4 type 8, IPv6 type 128) and hands every other packet
 * on ("next"). Meant for a pod's egress -- the netkit peer hook, or tcx egress of a veth end --
 * but valid on any hook.
 *
 * Finding the IP header on devices with and without a link-layer header:
 * on a netkit L3 device there is no Ethernet header (skb data starts at the IP header); on veth,
 * on netkit L2, and at tcx ingress/egress of either, skb data starts at the Ethernet header.
 * Rather than guess which case applies from the bytes at skb->data (an IPv4 source address can
 * look like an EtherType), the program asks the kernel: skb->protocol says which network
 * protocol the packet carries (set by the stack on transmit, by eth_type_trans on receive, so
 * it is there in both cases), and bpf_skb_load_bytes_relative(..., BPF_HDR_START_NET) reads
 * relative to the skb's network header offset, which the stack has set in every one of these
 * paths. The same instructions therefore work whatever the device's header length.
 *
 * Limits (a packet the program cannot classify is handed on, never dropped): IPv6 echo requests
 * behind extension headers and IPv4 non-first fragments are not recognised; headers outside the
 * skb's linear data cannot be read with this helper (ICMP headers practically always are in it).
 *
 * Map `drops`: one __u64 (key 0), the number of echo requests dropped. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "returns.h"

#define IPV4_FRAG_OFFSET 0x1fff /* fragment-offset bits of iphdr.frag_off */
/* <linux/icmp.h> drags in libc headers that do not build for -target bpf */
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58 /* <linux/in6.h> */
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* one byte at offset off from the network header; -1 if it is not in the linear data */
static __always_inline int net_byte(struct __sk_buff *skb, __u32 off)
{
	__u8 b;

	if (bpf_skb_load_bytes_relative(skb, off, &b, 1, BPF_HDR_START_NET))
		return -1;
	return b;
}

static __always_inline int is_echo_request(struct __sk_buff *skb)
{
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__be16 frag;
		int vihl = net_byte(skb, 0);

		if (vihl < 0 || (vihl >> 4) != 4 || (vihl & 0xf) < 5)
			return 0;
		if (net_byte(skb, 9) != IPPROTO_ICMP) /* iphdr.protocol */
			return 0;
		if (bpf_skb_load_bytes_relative(skb, 6, &frag, sizeof(frag), BPF_HDR_START_NET) ||
		    (frag & bpf_htons(IPV4_FRAG_OFFSET)))
			return 0; /* only the first fragment carries the ICMP header */
		return net_byte(skb, (vihl & 0xf) * 4) == ICMP_ECHO;
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (net_byte(skb, 6) != IPPROTO_ICMPV6) /* ipv6hdr.nexthdr */
			return 0;
		return net_byte(skb, 40) == ICMPV6_ECHO_REQUEST; /* right after the fixed header */
	}
	return 0;
}

SEC("tc")
int pod_egress(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *n;

	if (!is_echo_request(skb))
		return NK_NEXT;
	n = bpf_map_lookup_elem(&drops, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	return NK_DROP;
}

/* GPL-compatible so that users extending these examples can call GPL-only helpers
 * (bpf_printk); the programs themselves use none. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
