//go:build ignore

// hoptrace connection identity, for the local hand-off through a Service's
// virtual IP (docs/proxy.md, "Local hand-off").
//
// The outbound proxy dials a Service's virtual IP from the client pod's netns;
// kube-proxy rewrites the destination on the way, so the inbound proxy that
// accepts the connection in the server pod's netns sees another four-tuple.
// What both ends of one TCP connection do share, NAT or not, are the sequence
// numbers their SYNs took. This program runs on the agent's own sockets (it is
// attached to the agent's cgroup) when they become established and records,
// per connection, the pair (client's ISN + 1, server's ISN + 1) on the socket
// (connid_socks, which the agent reads by the socket's fd) and which ends of
// that connection are the agent's (connid_conns). Nothing here changes what
// any socket does: a missing record only means the bytes go over TCP.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2

char __license[] SEC("license") = "GPL";

/* A TCP connection as both its ends name it. */
struct conn_id {
	__u32 client; /* the client's initial sequence number + 1 */
	__u32 server; /* the server's initial sequence number + 1 */
};

/* Which ends of a connection are the agent's sockets. Each end writes only
 * its own byte, so the two may be recorded at once without atomics. */
struct conn_ends {
	__u8 client; /* 1: the agent dialed it (ACTIVE_ESTABLISHED) */
	__u8 server; /* 1: the agent accepted it (PASSIVE_ESTABLISHED) */
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct conn_id);
} connid_socks SEC(".maps");

/* Recent connections only: the two ends meet within milliseconds of the
 * handshake, and LRU eviction keeps churn from filling the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_id);
	__type(value, struct conn_ends);
} connid_conns SEC(".maps");

/* The agent's own network namespace (the node's, as it runs with
 * hostNetwork), set at load. Its sockets there (the admin API, the OTLP
 * exporter) are never one end of a proxied hop: the proxies' listeners and
 * dials live in the pods' namespaces. Left out, a pod's call to the admin API
 * does not look like a hop whose other end is the agent's. */
volatile const __u64 own_netns_cookie = 0;

static __always_inline int loopback4(__u32 ip) /* network order */
{
	return (bpf_ntohl(ip) >> 24) == 127;
}

static __always_inline int loopback6(__u32 ip0, __u32 ip1, __u32 ip2, __u32 ip3)
{
	if (ip0 || ip1)
		return 0;
	if (ip2 == bpf_htonl(0x0000ffff)) /* IPv4-mapped */
		return loopback4(ip3);
	return !ip2 && ip3 == bpf_htonl(1);
}

/* A connection with a loopback end is inside one pod: the app's to the
 * agent's outbound listener, the inbound proxy's to the app. It is never the
 * hop between two pods, and the agent makes two of them for every hop, so
 * they are left out: each record is a socket-storage allocation and a map
 * update, both paid again when the socket goes. */
static __always_inline int in_pod(struct bpf_sock_ops *skops)
{
	if (skops->family == AF_INET)
		return loopback4(skops->local_ip4) || loopback4(skops->remote_ip4);
	return loopback6(skops->local_ip6[0], skops->local_ip6[1], skops->local_ip6[2], skops->local_ip6[3]) ||
	       loopback6(skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2], skops->remote_ip6[3]);
}

SEC("sockops")
int hoptrace_connid(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	if (own_netns_cookie && bpf_get_netns_cookie(skops) == own_netns_cookie)
		return 1;
	if (in_pod(skops))
		return 1;
	/* Both read whatever the side: a field chosen by a branch becomes a
	 * computed context offset, which the verifier refuses. After the
	 * handshake each side's SYN took one number. */
	__u32 snd = skops->snd_nxt;
	__u32 rcv = skops->rcv_nxt;
	int server = op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB;
	struct conn_id id = {};
	id.client = server ? rcv : snd;
	id.server = server ? snd : rcv;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct conn_id *st = bpf_sk_storage_get(&connid_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 1;
	*st = id;
	/* The client's end is established first (the server's waits for its
	 * ACK), but both may run at once on two CPUs: whoever finds the entry
	 * there sets its byte in it. */
	struct conn_ends *ends = bpf_map_lookup_elem(&connid_conns, &id);
	if (!ends) {
		struct conn_ends e = {};
		if (server)
			e.server = 1;
		else
			e.client = 1;
		if (bpf_map_update_elem(&connid_conns, &id, &e, BPF_NOEXIST) == 0)
			return 1;
		ends = bpf_map_lookup_elem(&connid_conns, &id);
		if (!ends)
			return 1;
	}
	if (server)
		ends->server = 1;
	else
		ends->client = 1;
	return 1;
}
