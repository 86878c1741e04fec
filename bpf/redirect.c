/* redirect_to: sends every packet to the device a global names, by ifindex: with `use_peer`
 * through bpf_redirect_peer (into the peer of a netkit or veth pair, straight into its
 * namespace's receive path, as Cilium does for pods), otherwise with bpf_redirect (out of the
 * device). Only IP packets: ARP and the rest are handed on ("next"), so the device's own
 * neighbours still answer them (a pod resolves its gateway at the host end, on veth or netkit
 * L2). With target_ifindex 0 it hands every packet on.
 *
 * Both are `const volatile`: they live in .rodata, which nkplan sets per program instance
 * before load (`globals:` on the program entry) and the kernel freezes; the verifier sees their
 * values. Declare the target as a reference, `target_ifindex: {ifindex: DEVICE}`, and nkplan
 * keeps it true when that device is replaced (a new ifindex means a new instance).
 *
 * Map `redirects`: one __u64 (key 0), how many packets were redirected. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "returns.h"

const volatile __u32 target_ifindex = 0;
const volatile _Bool use_peer = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} redirects SEC(".maps");

SEC("tc")
int redirect_to(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *n;

	if (!target_ifindex)
		return NK_NEXT;
	if (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6))
		return NK_NEXT;
	n = bpf_map_lookup_elem(&redirects, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	if (use_peer)
		return bpf_redirect_peer(target_ifindex, 0);
	return bpf_redirect(target_ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
