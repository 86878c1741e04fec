/* Globals of every kind spec/bpfvalues.py encodes (tests/unit/test_bpfvalues.py compiles it). */
#include <linux/bpf.h>
#include <linux/types.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>

enum color { RED = 1, GREEN = 2, BLUE = 300 };

struct pair {
	__u16 port;
	__u8 mac[6];
	__s32 delta;
};

union either {
	__u32 a;
	__u64 b;
};

struct bits {
	__u32 low : 4;
	__u32 high : 28;
};

const volatile __u32 count = 7;
const volatile __s8 small = 0;
const volatile _Bool on = 0;
const volatile __be32 addr = 0;
const volatile __be16 nport = 0;
const volatile __u8 mac[6] = {};
const volatile __u8 ip4[4] = {};
const volatile __u8 ip6[16] = {};
const volatile char label[8] = "";
const volatile enum color color = RED;
const volatile struct pair pair = {};
const volatile __u32 list[3] = {};
__u64 counter = 5;
__u32 zeroed;
union either either;
struct bits bits;
__u64 *pointer;
struct in6_addr v6addr;
struct in_addr v4addr;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, struct pair);
	__type(value, __u64);
} pairs SEC(".maps");

SEC("tc")
int values(struct __sk_buff *skb)
{
	__u32 k = count + small + on + addr + nport + mac[0] + ip4[0] + ip6[0] + label[0] + color + pair.port +
		  list[0] + counter + zeroed + either.a + bits.low + (pointer != 0);
	struct pair p = {};

	bpf_map_lookup_elem(&pairs, &p);
	return k ? -1 : 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
