/* allow_egress: a pod's allow list. An IPv4 packet leaves only if its destination lies in a
 * prefix of the map `allow` and, where that entry names a port, it is TCP or UDP to that port
 * (port 0: any traffic to the prefix, ICMP included). Everything else IPv4 is dropped; non-IPv4
 * packets (ARP, IPv6) are handed on ("next"). Meant for a pod's egress -- the netkit peer hook,
 * or tcx egress of a veth end inside the pod's namespace.
 *
 * The entries are declared in the spec (`maps: {allow: {entries: [...]}}` on the program entry)
 * and nkplan writes them into the running program's map: changing the list needs no reload.
 * The longest matching prefix wins (an LPM trie): a key is {prefixlen, addr}, as the kernel's
 * struct bpf_lpm_trie_key wants it. IPv4 options and fragments: the port is read behind the
 * header length the packet says; non-first fragments carry no port and are dropped when the
 * entry names one.
 *
 * Global `enforce` (const volatile, set per instance with `globals:`): false is a dry run --
 * nothing is dropped, the map `denied` (key 0) only counts what would have been. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "returns.h"

struct allow_key {
	__u32 prefixlen; /* leading bits of addr that must match (0-32) */
	__u8 addr[4];    /* IPv4 address, network order */
};

struct allow_rule {
	__u16 port;      /* destination port (TCP or UDP); 0: anything */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct allow_key);
	__type(value, struct allow_rule);
} allow SEC(".maps");

const volatile _Bool enforce = 1;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} denied SEC(".maps");

static __always_inline int deny(void)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&denied, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	return enforce ? NK_DROP : NK_NEXT;
}

SEC("tc")
int allow_egress(struct __sk_buff *skb)
{
	struct allow_key key = {.prefixlen = 32};
	struct allow_rule *rule;
	__u8 vihl, proto;
	__be16 dport;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return NK_NEXT;
	if (bpf_skb_load_bytes_relative(skb, 0, &vihl, 1, BPF_HDR_START_NET) ||
	    bpf_skb_load_bytes_relative(skb, 9, &proto, 1, BPF_HDR_START_NET) ||
	    bpf_skb_load_bytes_relative(skb, 16, key.addr, 4, BPF_HDR_START_NET))
		return deny();
	rule = bpf_map_lookup_elem(&allow, &key);
	if (!rule)
		return deny();
	if (!rule->port)
		return NK_NEXT;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return deny();
	if (bpf_skb_load_bytes_relative(skb, (vihl & 0xf) * 4 + 2, &dport, 2, BPF_HDR_START_NET))
		return deny();
	return bpf_ntohs(dport) == rule->port ? NK_NEXT : deny();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
