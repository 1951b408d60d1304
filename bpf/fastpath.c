//go:build ignore

// hoptrace sk_msg fast path for the in-pod loopback legs (the Merbridge/Kmesh
// technique, one-way). An app's socket whose peer is one of the agent's sockets in
// the same netns (its redirected outbound connection to the outbound listener, or
// the proxy's passthrough dial to the app) is put into fast_apps by sockops; the
// agent puts its own end into fast_peers. Then the app's sendmsg runs the sk_msg
// program, which moves the bytes straight onto the agent socket's receive queue,
// skipping the loopback TCP stack.
//
// Only the app-to-agent direction is redirected: the agent reads with read(2) and
// recv(MSG_PEEK), which see the redirected queue, while an app may read with
// splice(2), FIONREAD or TCP_ZEROCOPY_RECEIVE, which do not.
//
// Everything fails open to plain TCP: with no peer in the map, or once the app has
// sent a byte over TCP on the socket (redirecting then could overtake it), the
// program returns SK_PASS.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#define AF_INET 2
#define AF_INET6 10

char __license[] SEC("license") = "GPL";

struct fast_addr {
	__u32 ip[4]; /* IPv4 as IPv4-mapped IPv6 */
};

/* A socket seen from its own side: both programs and the agent build it alike. */
struct fast_key {
	__u64 netns_cookie;
	struct fast_addr local;
	struct fast_addr remote;
	__u16 local_port;  /* host byte order */
	__u16 remote_port; /* host byte order */
	__u32 pad;
};

/* Pods with the fast path on, keyed by netns cookie. */
struct fast_pod {
	__u16 outbound_port; /* the agent's outbound listener port */
	__u16 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct fast_pod);
} fast_pods SEC(".maps");

/* App sockets; the sk_msg program is attached to this map. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct fast_key);
	__type(value, __u64);
} fast_apps SEC(".maps");

/* The agent's sockets, the targets. No program is attached here, so the agent's
 * own sends take the normal path. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct fast_key);
	__type(value, __u64);
} fast_peers SEC(".maps");

/* Read in Go through the generated constants (redirect.FastPathCounters). */
enum fast_counter {
	FAST_APP_SOCKETS = 0,    /* app sockets put into fast_apps */
	FAST_REDIRECTED = 1,     /* sendmsg calls moved straight to the agent */
	FAST_REDIRECTED_BYTES = 2,
	FAST_PASS_NO_PEER = 3,   /* the agent's end is not (or no more) in fast_peers */
	FAST_PASS_TCP_BEFORE = 4, /* the app sent over TCP before its peer joined */
	FAST_APP_SOCKETS_FAILED = 5,
	FAST_COUNTER_MAX = 8,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAST_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fast_counters SEC(".maps");

/* The kernel's type, read with CO-RE: only the fields used. */
struct tcp_sock {
	__u64 bytes_sent;
	__u32 write_seq;
	__u32 snd_nxt;
} __attribute__((preserve_access_index));

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&fast_counters, &idx);
	if (v)
		*v += n;
}

static __always_inline void map_v4(struct fast_addr *a, __u32 ip4)
{
	a->ip[0] = 0;
	a->ip[1] = 0;
	a->ip[2] = bpf_htonl(0x0000ffff);
	a->ip[3] = ip4;
}

static __always_inline int is_loopback(const struct fast_addr *a)
{
	if (a->ip[0] == 0 && a->ip[1] == 0 && a->ip[2] == bpf_htonl(0x0000ffff))
		return (bpf_ntohl(a->ip[3]) >> 24) == 127;
	return a->ip[0] == 0 && a->ip[1] == 0 && a->ip[2] == 0 && a->ip[3] == bpf_htonl(1);
}

static __always_inline int same_addr(const struct fast_addr *a, const struct fast_addr *b)
{
	return a->ip[0] == b->ip[0] && a->ip[1] == b->ip[1] && a->ip[2] == b->ip[2] && a->ip[3] == b->ip[3];
}

/* remote_port is in network byte order, in the high half of the field on some
 * kernels and the low half on others: take whichever half is set. */
static __always_inline __u16 remote_port(__u32 field)
{
	if (field > 0xffff)
		field >>= 16;
	return bpf_ntohs((__u16)field);
}

#define PASSTHROUGH_IP4 0x7f000006 /* 127.0.0.6, the proxy's source towards the app */

/* sockops: put the app's end of an in-pod leg into fast_apps as soon as it is
 * established, before the app can send on it. */
SEC("sockops")
int hoptrace_fast_sockops(struct bpf_sock_ops *skops)
{
	int active = skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB;
	if (!active && skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;
	__u64 cookie = bpf_get_netns_cookie(skops);
	struct fast_pod *pod = bpf_map_lookup_elem(&fast_pods, &cookie);
	if (!pod)
		return 1;

	struct fast_key k = {};
	k.netns_cookie = cookie;
	/* Every field is read, whatever the family: the verifier refuses a context
	 * pointer that clang would otherwise pick per branch. */
	__u32 l4 = skops->local_ip4, r4 = skops->remote_ip4;
	k.local.ip[0] = skops->local_ip6[0];
	k.local.ip[1] = skops->local_ip6[1];
	k.local.ip[2] = skops->local_ip6[2];
	k.local.ip[3] = skops->local_ip6[3];
	k.remote.ip[0] = skops->remote_ip6[0];
	k.remote.ip[1] = skops->remote_ip6[1];
	k.remote.ip[2] = skops->remote_ip6[2];
	k.remote.ip[3] = skops->remote_ip6[3];
	if (skops->family == AF_INET) {
		map_v4(&k.local, l4);
		map_v4(&k.remote, r4);
	}
	k.local_port = (__u16)skops->local_port;
	k.remote_port = remote_port(skops->remote_port);

	if (active) {
		/* The app's connection to the outbound listener (where connect4/6 sent it). */
		if (!is_loopback(&k.remote) || k.remote_port != pod->outbound_port)
			return 1;
	} else {
		/* The proxy's dial to the app: from 127.0.0.6, or on IPv6 from the pod's own
		 * address (a pod calling itself has no agent peer and stays on TCP). */
		struct fast_addr pass;
		map_v4(&pass, bpf_htonl(PASSTHROUGH_IP4));
		if (!same_addr(&k.remote, &pass) &&
		    !(skops->family == AF_INET6 && same_addr(&k.remote, &k.local)))
			return 1;
	}
	if (bpf_sock_hash_update(skops, &fast_apps, &k, BPF_ANY))
		count(FAST_APP_SOCKETS_FAILED, 1);
	else
		count(FAST_APP_SOCKETS, 1);
	return 1;
}

/* sent_over_tcp says whether the app has ever put a byte into TCP on this socket:
 * bytes transmitted, or queued and not yet transmitted. Once it has, its sends
 * stay on TCP for good: redirected bytes land on the agent's queue of redirected
 * messages, which the agent reads before its TCP queue, so they would overtake
 * TCP bytes it has not read yet. Redirected bytes never touch these counters, and
 * the app's socket lock, held here, keeps them still. */
static __always_inline int sent_over_tcp(struct sk_msg_md *msg)
{
	struct tcp_sock *self = bpf_skc_to_tcp_sock(msg->sk);
	if (!self)
		return 1;
	return BPF_CORE_READ(self, bytes_sent) != 0 ||
	       BPF_CORE_READ(self, write_seq) != BPF_CORE_READ(self, snd_nxt);
}

SEC("sk_msg")
int hoptrace_fast_msg(struct sk_msg_md *msg)
{
	/* The agent's end, seen from its own side: the app's local and remote swapped. */
	struct fast_key k = {};
	k.netns_cookie = bpf_get_netns_cookie(msg);
	__u32 l4 = msg->local_ip4, r4 = msg->remote_ip4;
	k.local.ip[0] = msg->remote_ip6[0];
	k.local.ip[1] = msg->remote_ip6[1];
	k.local.ip[2] = msg->remote_ip6[2];
	k.local.ip[3] = msg->remote_ip6[3];
	k.remote.ip[0] = msg->local_ip6[0];
	k.remote.ip[1] = msg->local_ip6[1];
	k.remote.ip[2] = msg->local_ip6[2];
	k.remote.ip[3] = msg->local_ip6[3];
	if (msg->family == AF_INET) {
		map_v4(&k.local, r4);
		map_v4(&k.remote, l4);
	}
	k.local_port = remote_port(msg->remote_port);
	k.remote_port = (__u16)msg->local_port;

	if (sent_over_tcp(msg)) {
		count(FAST_PASS_TCP_BEFORE, 1);
		return SK_PASS;
	}
	__u32 size = msg->size;
	if (bpf_msg_redirect_hash(msg, &fast_peers, &k, BPF_F_INGRESS) != SK_PASS) {
		/* The agent's end is not (or no more) in fast_peers: TCP it is. */
		count(FAST_PASS_NO_PEER, 1);
		return SK_PASS;
	}
	count(FAST_REDIRECTED, 1);
	count(FAST_REDIRECTED_BYTES, size);
	return SK_PASS;
}

/* Keep these types in BTF so bpf2go can generate their Go twins. */
const struct fast_key *unused_fast_key __attribute__((unused));
const enum fast_counter *unused_fast_counter __attribute__((unused));
