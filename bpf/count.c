/* count_pass: counts every packet (and its bytes) that crosses the hook, then hands the packet
 * on unchanged ("next": later programs on the hook still decide; after the last one it passes).
 *
 * Map `counters`: an array with one entry (key 0) of struct counters. A plain array with atomic
 * adds rather than a per-CPU array, so one lookup (MAP_LOOKUP_ELEM, `bpftool map dump`) gives
 * the total without summing per-CPU slots. skb->len counts from the data start: on netkit L3
 * that is the IP header, on veth/tcx and netkit L2 the Ethernet header. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "returns.h"

struct counters {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

SEC("tc")
int count_pass(struct __sk_buff *skb)
{
	__u32 key = 0;
	struct counters *c = bpf_map_lookup_elem(&counters, &key);

	if (c) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, skb->len);
	}
	return NK_NEXT;
}

/* GPL-compatible so that users extending these examples can call GPL-only helpers
 * (bpf_printk); the programs themselves use none. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";
