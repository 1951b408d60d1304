//go:build ignore

// hoptrace redirect programs. One object serves every pod on the node: per-pod
// behaviour lives in maps keyed by the pod's netns cookie (outbound) or its IP
// (inbound), so programs are loaded once and only links are made per pod.
//
// Every decision fails open: if a map entry or the agent's listener is missing, the
// connection proceeds exactly as if hoptrace were not there.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SK_PASS 1

char __license[] SEC("license") = "GPL";

/* Why a connection was or was not redirected. These enums are the programs' ABI
 * with the agent: bpf2go (-type) generates their Go twins, so neither side keeps
 * a copy. */
enum reason {
	REASON_REDIRECTED = 1,       /* outbound: sent to the outbound listener */
	REASON_NO_LISTENER = 2,      /* outbound: agent listener absent, fail-open */
	REASON_EXCLUDED_PORT = 3,    /* outbound: destination port excluded for this pod */
	REASON_EXCLUDED_CIDR = 4,    /* outbound: destination in an excluded CIDR */
	REASON_INBOUND_CAPTURED = 5, /* inbound: assigned to the inbound listener */
	REASON_INBOUND_SKIPPED = 6,  /* inbound: port not captured for this pod */
	REASON_INBOUND_NO_LISTENER = 7, /* inbound: listener gone, fail-open */
	REASON_INBOUND_ASSIGN_FAILED = 8,
};

enum direction {
	DIR_OUTBOUND = 1,
	DIR_INBOUND = 2,
};

/* struct addr holds IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one key type serves both families. */
struct addr {
	__u32 ip[4];
};

struct orig_dst {
	struct addr ip;
	__u16 port;   /* host byte order */
	__u16 family; /* AF_INET or AF_INET6 */
	__u32 pad;
	__u64 netns_cookie;
};

/* Key under which the proxy finds the original destination after accept. */
struct port_key {
	__u64 netns_cookie;
	__u16 port; /* client's local port, host byte order */
	__u16 family;
	__u32 pad;
};

/* Per-pod outbound settings, keyed by the pod's netns cookie. */
struct pod_out {
	__u16 listen_port; /* outbound listener port on loopback */
	__u16 flags;
	__u32 pad;
};

enum pod_in_flag {
	POD_IN_ALL_PORTS = 1,
};

/* Per-pod inbound settings, keyed by each pod IP. */
struct pod_in {
	__u64 netns_cookie;
	__u16 listen_port; /* inbound listener port (never captured itself) */
	__u16 outbound_port;
	__u16 flags;       /* POD_IN_ALL_PORTS: capture every port but skipped ones */
	__u16 pad;
};

/* The value of a pod_ports entry. */
enum port_action {
	PORT_CAPTURE = 1,
	PORT_SKIP = 2,
};

struct pod_port {
	__u64 netns_cookie;
	__u16 port;
	__u8 direction;
	__u8 pad[5];
};

struct cidr_key {
	__u32 prefixlen; /* 64 bits of cookie + bits of the (mapped) address */
	__u64 netns_cookie;
	struct addr ip;
} __attribute__((packed));

struct event {
	__u64 ts_ns;
	__u64 netns_cookie;
	__u64 socket_cookie;
	__u32 pid;
	__u8 direction;
	__u8 reason;
	__u16 family;
	struct addr dst;
	struct addr src;
	__u16 dst_port;
	__u16 src_port;
	__u32 pad;
	char comm[16];
};

/* Counters; per-CPU so the hot path never contends. Connections that are captured
 * as intended are counted, not reported as events: an event wakes the agent, and at
 * thousands of new connections per second those wake-ups cost more CPU than the
 * capture itself. The proxies report those flows themselves anyway. Bypasses stay
 * events: they are rare, and each one is worth seeing. */
enum counter {
	COUNTER_EVENTS_LOST = 0,
	COUNTER_REDIRECTED = 1, /* outbound connections sent to the proxy */
	COUNTER_CAPTURED = 2,   /* inbound connections assigned to the proxy */
	COUNTER_MAX = 16,
};

/* What connect4/6 leave on a socket they redirected, in socket-local storage: the
 * kernel frees it with the socket, so the record lives exactly as long as the app
 * can ask about its socket, and no map fills up or evicts under load. */
struct redirected {
	struct orig_dst dst;
	__u16 listen_port; /* where the socket was sent instead */
	__u16 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct redirected);
} redirected_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct port_key);
	__type(value, struct orig_dst);
} orig_by_port SEC(".maps");

/* What sockops hands the proxy for each redirected connection: its key and
 * original destination, in a ring the agent reads from shared memory (no
 * wake-up is sent: the agent looks when it accepts). A look-up in orig_by_port
 * is a bpf() system call per connection, the largest part of the capture's
 * cost per connection; reading the ring is none. When the ring is full (an
 * agent that stopped accepting) the record goes to orig_by_port instead. */
struct orig_rec {
	struct port_key key;
	struct orig_dst dst;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} orig_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* netns cookie */
	__type(value, struct pod_out);
} pods_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct addr); /* pod IP */
	__type(value, struct pod_in);
} pods_in SEC(".maps");

/* The address a pod's redirected sockets report as their own (getsockname): the
 * pod's IPv4 address (mapped) and its IPv6 address, all zero where it has none. */
struct pod_local {
	struct addr v4;
	struct addr v6;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* netns cookie */
	__type(value, struct pod_local);
} pods_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pod_port);
	__type(value, __u8); /* PORT_CAPTURE or PORT_SKIP */
} pod_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct cidr_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} skip_cidrs SEC(".maps");

/* Inbound listeners, keyed by pod IP; an IPv4 address maps to the pod's IPv4
 * listener, an IPv6 one to its IPv6 listener. The kernel removes a socket from the
 * map when it closes, which is what makes inbound capture fail open. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 8192);
	__type(key, struct addr);
	__type(value, __u64);
} inbound_listeners SEC(".maps");

/* Bypass events only (captures are per-CPU counters): 256 KiB holds about
 * 2,900 of them between two reads, and what does not fit is counted
 * (COUNTER_EVENTS_LOST). Its data pages are mapped twice into the agent, so
 * each KiB here is two of the agent's resident memory. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Switches the agent sets at load time. */
enum setting {
	SETTING_ALL_EVENTS = 0, /* also report captured connections as events */
	SETTING_MAX = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SETTING_MAX);
	__type(key, __u32);
	__type(value, __u32);
} settings SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline int setting(__u32 idx)
{
	__u32 *v = bpf_map_lookup_elem(&settings, &idx);
	return v && *v;
}

static __always_inline void emit(__u64 netns_cookie, __u64 sock_cookie, __u8 dir, __u8 reason,
				 __u16 family, const struct addr *dst, __u16 dst_port,
				 const struct addr *src, __u16 src_port, int with_task)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_EVENTS_LOST);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->netns_cookie = netns_cookie;
	e->socket_cookie = sock_cookie;
	e->direction = dir;
	e->reason = reason;
	e->family = family;
	e->dst = *dst;
	e->dst_port = dst_port;
	e->src_port = src_port;
	e->pad = 0;
	if (src)
		e->src = *src;
	else
		__builtin_memset(&e->src, 0, sizeof(e->src));
	if (with_task) {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	} else {
		e->pid = 0;
		__builtin_memset(e->comm, 0, sizeof(e->comm));
	}
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void map_v4(struct addr *a, __u32 ip4)
{
	a->ip[0] = 0;
	a->ip[1] = 0;
	a->ip[2] = bpf_htonl(0x0000ffff);
	a->ip[3] = ip4;
}

static __always_inline int is_v4_mapped(const struct addr *a)
{
	return a->ip[0] == 0 && a->ip[1] == 0 && a->ip[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int is_loopback(const struct addr *a)
{
	if (is_v4_mapped(a))
		return (bpf_ntohl(a->ip[3]) >> 24) == 127;
	return a->ip[0] == 0 && a->ip[1] == 0 && a->ip[2] == 0 && a->ip[3] == bpf_htonl(1);
}

static __always_inline int is_unspecified(const struct addr *a)
{
	return (a->ip[0] == 0 && a->ip[1] == 0 && a->ip[2] == 0 && a->ip[3] == 0) ||
	       (is_v4_mapped(a) && a->ip[3] == 0);
}

/* is_local says whether a destination never leaves the pod: loopback, or the
 * unspecified address (connect(0.0.0.0) and connect(::) reach the host itself). */
static __always_inline int is_local(const struct addr *a)
{
	return is_loopback(a) || is_unspecified(a);
}

static __always_inline void read_ip6(struct addr *a, const struct bpf_sock_addr *ctx)
{
	a->ip[0] = ctx->user_ip6[0];
	a->ip[1] = ctx->user_ip6[1];
	a->ip[2] = ctx->user_ip6[2];
	a->ip[3] = ctx->user_ip6[3];
}

static __always_inline void write_ip6(struct bpf_sock_addr *ctx, const struct addr *a)
{
	ctx->user_ip6[0] = a->ip[0];
	ctx->user_ip6[1] = a->ip[1];
	ctx->user_ip6[2] = a->ip[2];
	ctx->user_ip6[3] = a->ip[3];
}

static __always_inline int port_rule(__u64 netns_cookie, __u16 port, __u8 dir)
{
	struct pod_port k = {};
	k.netns_cookie = netns_cookie;
	k.port = port;
	k.direction = dir;
	__u8 *v = bpf_map_lookup_elem(&pod_ports, &k);
	return v ? *v : 0;
}

static __always_inline int cidr_skipped(__u64 netns_cookie, const struct addr *dst)
{
	struct cidr_key k = {};
	k.prefixlen = 64 + 128;
	k.netns_cookie = netns_cookie;
	k.ip = *dst;
	return bpf_map_lookup_elem(&skip_cidrs, &k) != NULL;
}

/* listener_alive asks the kernel whether the agent's outbound listener exists in the
 * caller's netns right now; without it we must not redirect (fail-open). */
static __always_inline int listener_alive(struct bpf_sock_addr *ctx, int v6, __u16 port)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	if (v6) {
		t.ipv6.daddr[3] = bpf_htonl(1);
		t.ipv6.dport = bpf_htons(port);
		sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	} else {
		t.ipv4.daddr = bpf_htonl(0x7f000001);
		t.ipv4.dport = bpf_htons(port);
		sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/* connect_common decides for one outbound connect(). dst is the (mapped) destination;
 * v6_listener says whether the redirect target must be [::1] (a real IPv6 socket
 * connecting to an IPv6 address) or 127.0.0.1. */
static __always_inline int connect_common(struct bpf_sock_addr *ctx, struct addr *dst, __u16 family,
					  int v6_listener)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;

	__u64 netns_cookie = bpf_get_netns_cookie(ctx);
	struct pod_out *pod = bpf_map_lookup_elem(&pods_out, &netns_cookie);
	if (!pod)
		return 1;
	/* A socket connected again (after connect(AF_UNSPEC)) must not go on reporting
	 * an earlier redirect: whatever this connect decides starts from nothing. */
	bpf_sk_storage_delete(&redirected_socks, ctx->sk);
	/* Traffic inside the pod never leaves it: not a hop. */
	if (is_local(dst))
		return 1;

	__u16 port = bpf_ntohs(ctx->user_port);
	__u64 sock_cookie = bpf_get_socket_cookie(ctx);
	__u8 reason;

	if (port_rule(netns_cookie, port, DIR_OUTBOUND) == PORT_SKIP) {
		reason = REASON_EXCLUDED_PORT;
		goto bypass;
	}
	if (cidr_skipped(netns_cookie, dst)) {
		reason = REASON_EXCLUDED_CIDR;
		goto bypass;
	}
	if (!listener_alive(ctx, v6_listener, pod->listen_port)) {
		reason = REASON_NO_LISTENER;
		goto bypass;
	}

	struct redirected *rd = bpf_sk_storage_get(&redirected_socks, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!rd) {
		/* Without a record the proxy could not tell where to go: leave it alone. */
		reason = REASON_NO_LISTENER;
		goto bypass;
	}
	rd->dst.ip = *dst;
	rd->dst.port = port;
	rd->dst.family = family;
	rd->dst.netns_cookie = netns_cookie;
	rd->listen_port = pod->listen_port;

	if (v6_listener) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	} else if (family == AF_INET6) {
		/* IPv4-mapped destination on a dual-stack socket. */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
	} else {
		ctx->user_ip4 = bpf_htonl(0x7f000001);
	}
	ctx->user_port = bpf_htons(pod->listen_port);
	count(COUNTER_REDIRECTED);
	if (setting(SETTING_ALL_EVENTS))
		emit(netns_cookie, sock_cookie, DIR_OUTBOUND, REASON_REDIRECTED, family, dst, port, NULL, 0, 1);
	return 1;

bypass:
	emit(netns_cookie, sock_cookie, DIR_OUTBOUND, reason, family, dst, port, NULL, 0, 1);
	return 1;
}

SEC("cgroup/connect4")
int hoptrace_connect4(struct bpf_sock_addr *ctx)
{
	struct addr dst;
	map_v4(&dst, ctx->user_ip4);
	return connect_common(ctx, &dst, AF_INET, 0);
}

SEC("cgroup/connect6")
int hoptrace_connect6(struct bpf_sock_addr *ctx)
{
	struct addr dst;
	read_ip6(&dst, ctx);
	if (is_v4_mapped(&dst))
		return connect_common(ctx, &dst, AF_INET6, 0);
	return connect_common(ctx, &dst, AF_INET6, 1);
}

/* sockops hands a redirected connection's original destination from the socket
 * (where connect left it) to the proxy under the key (netns cookie, local port),
 * which is what the proxy can see after accept: through orig_ring, or
 * orig_by_port when the ring is full. The socket keeps its own copy for
 * getpeername. */
SEC("sockops")
int hoptrace_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct redirected *rd = bpf_sk_storage_get(&redirected_socks, sk, 0, 0);
	if (!rd)
		return 1;
	struct port_key k = {};
	k.netns_cookie = bpf_get_netns_cookie(skops);
	k.port = (__u16)skops->local_port;
	k.family = skops->family == AF_INET6 && !(skops->remote_ip6[0] == 0 && skops->remote_ip6[1] == 0 &&
						      skops->remote_ip6[2] == bpf_htonl(0x0000ffff))
			   ? AF_INET6
			   : AF_INET;
	struct orig_rec rec = {.key = k, .dst = rd->dst};
	if (bpf_ringbuf_output(&orig_ring, &rec, sizeof(rec), BPF_RB_NO_WAKEUP) != 0)
		bpf_map_update_elem(&orig_by_port, &k, &rd->dst, BPF_ANY);
	return 1;
}

/* Transparency: to the app, a redirected socket is connected to where it asked to
 * go, from the pod's own address, as it would be without hoptrace (or with an
 * iptables REDIRECT). Only sockets that carry connect's record and are still
 * connected to the outbound listener are rewritten; every other socket, and every
 * socket of the agent (which is not in the pod's cgroup), reports what the kernel
 * knows. The port of getsockname stays the socket's own. */

/* still_redirected: the socket's real peer (peer, port in network order) is the
 * listener its connect was sent to. */
static __always_inline int still_redirected(const struct redirected *rd, const struct addr *peer, __u32 port)
{
	return port == bpf_htons(rd->listen_port) && is_loopback(peer);
}

SEC("cgroup/getpeername4")
int hoptrace_getpeername4(struct bpf_sock_addr *ctx)
{
	struct redirected *rd = bpf_sk_storage_get(&redirected_socks, ctx->sk, 0, 0);
	if (!rd)
		return 1;
	struct addr peer;
	map_v4(&peer, ctx->user_ip4);
	if (!still_redirected(rd, &peer, ctx->user_port) || !is_v4_mapped(&rd->dst.ip))
		return 1;
	ctx->user_ip4 = rd->dst.ip.ip[3];
	ctx->user_port = bpf_htons(rd->dst.port);
	return 1;
}

SEC("cgroup/getpeername6")
int hoptrace_getpeername6(struct bpf_sock_addr *ctx)
{
	struct redirected *rd = bpf_sk_storage_get(&redirected_socks, ctx->sk, 0, 0);
	if (!rd)
		return 1;
	struct addr peer;
	read_ip6(&peer, ctx);
	if (!still_redirected(rd, &peer, ctx->user_port))
		return 1;
	/* An IPv4-mapped destination was recorded mapped, as the app gave it. */
	write_ip6(ctx, &rd->dst.ip);
	ctx->user_port = bpf_htons(rd->dst.port);
	return 1;
}

/* The local address of a socket connected to 127.0.0.1 is 127.0.0.1. An app that
 * learns its own address from a connected socket (and hands it to others, as
 * cluster members, FTP or SIP clients do) must see the pod's address instead. */
SEC("cgroup/getsockname4")
int hoptrace_getsockname4(struct bpf_sock_addr *ctx)
{
	if (!bpf_sk_storage_get(&redirected_socks, ctx->sk, 0, 0))
		return 1;
	struct addr self;
	map_v4(&self, ctx->user_ip4);
	if (!is_loopback(&self))
		return 1;
	__u64 netns_cookie = bpf_get_netns_cookie(ctx);
	struct pod_local *pl = bpf_map_lookup_elem(&pods_local, &netns_cookie);
	if (!pl || is_unspecified(&pl->v4))
		return 1;
	ctx->user_ip4 = pl->v4.ip[3];
	return 1;
}

SEC("cgroup/getsockname6")
int hoptrace_getsockname6(struct bpf_sock_addr *ctx)
{
	if (!bpf_sk_storage_get(&redirected_socks, ctx->sk, 0, 0))
		return 1;
	struct addr self;
	read_ip6(&self, ctx);
	if (!is_loopback(&self))
		return 1;
	__u64 netns_cookie = bpf_get_netns_cookie(ctx);
	struct pod_local *pl = bpf_map_lookup_elem(&pods_local, &netns_cookie);
	if (!pl)
		return 1;
	/* A dual-stack socket sent to ::ffff:127.0.0.1 gets the pod's IPv4 address, mapped. */
	const struct addr *own = is_v4_mapped(&self) ? &pl->v4 : &pl->v6;
	if (is_unspecified(own))
		return 1;
	write_ip6(ctx, own);
	return 1;
}

/* sk_lookup steers new inbound connections for a pod's ports into the agent's
 * inbound listener in that pod's netns. */
SEC("sk_lookup")
int hoptrace_sk_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;

	struct addr dst, src;
	if (ctx->family == AF_INET) {
		map_v4(&dst, ctx->local_ip4);
		map_v4(&src, ctx->remote_ip4);
	} else {
		dst.ip[0] = ctx->local_ip6[0];
		dst.ip[1] = ctx->local_ip6[1];
		dst.ip[2] = ctx->local_ip6[2];
		dst.ip[3] = ctx->local_ip6[3];
		src.ip[0] = ctx->remote_ip6[0];
		src.ip[1] = ctx->remote_ip6[1];
		src.ip[2] = ctx->remote_ip6[2];
		src.ip[3] = ctx->remote_ip6[3];
	}

	struct pod_in *pod = bpf_map_lookup_elem(&pods_in, &dst);
	if (!pod)
		return SK_PASS;

	/* The proxy's own dial to the local app comes from 127.0.0.6 (IPv4) or from the pod's own
	 * address (IPv6, where no spare loopback address exists): let it reach the app. A pod
	 * calling its own IP is not a hop between pods either. */
	if (is_v4_mapped(&src) && src.ip[3] == bpf_htonl(0x7f000006))
		return SK_PASS;
	if (src.ip[0] == dst.ip[0] && src.ip[1] == dst.ip[1] && src.ip[2] == dst.ip[2] && src.ip[3] == dst.ip[3])
		return SK_PASS;

	__u16 port = (__u16)ctx->local_port;
	__u16 sport = bpf_ntohs(ctx->remote_port);
	__u16 family = ctx->family;
	if (port == pod->listen_port || port == pod->outbound_port)
		return SK_PASS;

	int rule = port_rule(pod->netns_cookie, port, DIR_INBOUND);
	if (rule == PORT_SKIP || (rule != PORT_CAPTURE && !(pod->flags & POD_IN_ALL_PORTS))) {
		emit(pod->netns_cookie, 0, DIR_INBOUND, REASON_INBOUND_SKIPPED, family, &dst, port, &src, sport, 0);
		return SK_PASS;
	}

	struct bpf_sock *sk = bpf_map_lookup_elem(&inbound_listeners, &dst);
	if (!sk) {
		emit(pod->netns_cookie, 0, DIR_INBOUND, REASON_INBOUND_NO_LISTENER, family, &dst, port, &src, sport, 0);
		return SK_PASS;
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err)
		emit(pod->netns_cookie, 0, DIR_INBOUND, REASON_INBOUND_ASSIGN_FAILED, family, &dst, port, &src, sport, 0);
	else {
		count(COUNTER_CAPTURED);
		if (setting(SETTING_ALL_EVENTS))
			emit(pod->netns_cookie, 0, DIR_INBOUND, REASON_INBOUND_CAPTURED, family, &dst, port, &src, sport, 0);
	}
	return SK_PASS;
}

/* Agent bookkeeping, never read by programs: which netns cookie and IPs a pinned pod
 * had, so an agent restarted after a crash can find and clean up what it left. */
#define POD_ID_LEN 128
#define POD_MAX_IPS 4
struct pod_id {
	char id[POD_ID_LEN];
};
struct pod_record {
	__u64 netns_cookie;
	struct addr ips[POD_MAX_IPS];
	__u32 nips;
	__u32 pad;
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct pod_id);
	__type(value, struct pod_record);
} pod_index SEC(".maps");

/* Keep these types in BTF so bpf2go can generate their Go twins. */
const struct orig_rec *unused_orig_rec __attribute__((unused));
const struct event *unused_event __attribute__((unused));
const struct cidr_key *unused_cidr_key __attribute__((unused));
const struct pod_port *unused_pod_port __attribute__((unused));
const struct pod_local *unused_pod_local __attribute__((unused));
const enum reason *unused_reason __attribute__((unused));
const enum direction *unused_direction __attribute__((unused));
const enum pod_in_flag *unused_pod_in_flag __attribute__((unused));
const enum port_action *unused_port_action __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum setting *unused_setting __attribute__((unused));
