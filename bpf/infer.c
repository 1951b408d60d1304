//go:build ignore

// hoptrace context inference (docs/inference.md). BTF tracepoints on every
// socket read (sock_recv_length) and TCP write (tcp_sendmsg_locked) learn which
// thread read which inbound request and label the thread's writes to captured
// outbound connections with it. Tracepoints, not fentry or kprobes: they are
// there on kernels built without either (6.4 and later). Loaded only when the
// agent runs with --infer-context; every program returns at once for sockets
// outside the pods that opted in (infer_pods).
//
// The kernel types are declared here with only the fields read, relocated by
// CO-RE against the running kernel's BTF: no vmlinux.h to commit.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 2

char __license[] SEC("license") = "GPL";

struct in6_addr {
	union {
		__u32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

struct net {
	__u64 net_cookie;
} __attribute__((preserve_access_index));

struct sock_common {
	__u32 skc_daddr;
	__u32 skc_rcv_saddr;
	__u16 skc_dport; /* network byte order */
	__u16 skc_num;   /* host byte order */
	unsigned short skc_family;
	struct {
		struct net *net;
	} skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_type;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 copied_seq;
	__u32 write_seq;
	__u32 snd_una;
	__u64 bytes_acked;
} __attribute__((preserve_access_index));

#define SOCK_STREAM 1
#define IPPROTO_TCP 6

/* Verdicts on one outbound write; mirrored in Go (infer.Verdict). */
enum verdict {
	VERDICT_LINKED = 1,    /* the thread serves exactly one unanswered request */
	VERDICT_NO_THREAD = 2, /* the thread never read an announced request */
	VERDICT_ANSWERED = 3,  /* its request was answered or superseded */
	VERDICT_AMBIGUOUS = 4, /* the thread or its process multiplexes requests */
};

/* Counters, indexes into infer_counters; mirrored in Go. */
enum counter {
	CNT_REQUEST_READ = 0,  /* a thread read an announced request's first byte */
	CNT_MULTIPLEXED = 1,   /* ... while it had another one unanswered */
	CNT_WRITE_RECORDED = 2,/* a write to a captured outbound connection */
	CNT_MAX = 3,
};

/* An IPv4 address as IPv4-mapped IPv6, so one key serves both families. */
struct in_addr6 {
	__u32 ip[4];
};

/* A TCP connection of an opted-in pod. Inbound (the proxy's connection to the
 * app): addr:port_a is the proxy's end, port_b the app's port. Outbound (the
 * app's connection to the outbound listener): addr:port_a is the app's end,
 * port_b the listener's port, and offset the stream offset of one write. */
struct conn_key {
	__u64 netns_cookie;
	struct in_addr6 addr;
	__u16 port_a;
	__u16 port_b;
	__u32 offset;
};

/* A W3C trace context, as the proxy sent it to the app. */
struct trace_ctx {
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 flags;
	__u8 pad[7];
};

/* The request the proxy is sending on an inbound connection. The proxy
 * announces it before writing it; its first write fills in start. */
struct inflight {
	struct trace_ctx ctx;
	__u64 seq;       /* unique per request, from the proxy */
	__u32 start;     /* TCP sequence number of the request's first byte */
	__u16 placed;    /* start is set */
	__u16 answered;  /* the app wrote on the connection since */
};

/* What a thread is serving. */
struct thread {
	struct conn_key conn; /* offset unused */
	__u64 seq;
};

/* One write to a captured outbound connection. */
struct link {
	struct trace_ctx ctx;
	__u32 verdict;
	__u32 tgid;
};

/* Opted-in pods by netns cookie. */
struct pod {
	__u16 outbound_port; /* the outbound listener's port in the pod */
	__u16 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct pod);
} infer_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384); /* proxy-to-app connections of opted-in pods */
	__type(key, struct conn_key);
	__type(value, struct inflight);
} infer_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct thread);
} infer_threads SEC(".maps");

/* Processes seen multiplexing requests on a thread: never linked again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, __u32);
} infer_async SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384); /* writes not yet looked up: consumed within microseconds */
	__type(key, struct conn_key);
	__type(value, struct link);
} infer_links SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} infer_counters SEC(".maps");

/* bpf2go emits Go types only for types the object uses. */
const enum verdict *unused_verdict __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&infer_counters, &i);
	if (v)
		(*v)++;
}

static __always_inline __u64 netns_of(struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
}

/* The peer (remote=1) or local address of sk, IPv4 as IPv4-mapped IPv6. */
static __always_inline int sk_addr(struct sock *sk, int remote, struct in_addr6 *a)
{
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_INET) {
		a->ip[0] = 0;
		a->ip[1] = 0;
		a->ip[2] = bpf_htonl(0xffff);
		a->ip[3] = remote ? BPF_CORE_READ(sk, __sk_common.skc_daddr)
				  : BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		return 0;
	}
	if (family == AF_INET6) {
		if (remote)
			BPF_CORE_READ_INTO(a, sk, __sk_common.skc_v6_daddr);
		else
			BPF_CORE_READ_INTO(a, sk, __sk_common.skc_v6_rcv_saddr);
		return 0;
	}
	return -1;
}

/* The key of an inbound connection as the app's socket sees it. */
static __always_inline int inbound_key(struct sock *sk, __u64 netns, struct conn_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->netns_cookie = netns;
	if (sk_addr(sk, 1, &k->addr))
		return -1;
	k->port_a = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	k->port_b = BPF_CORE_READ(sk, __sk_common.skc_num);
	return 0;
}

static __always_inline int is_loopback(const struct in_addr6 *a)
{
	if (a->ip[0] == 0 && a->ip[1] == 0 && a->ip[2] == bpf_htonl(0xffff))
		return (bpf_ntohl(a->ip[3]) >> 24) == 127;
	return a->ip[0] == 0 && a->ip[1] == 0 && a->ip[2] == 0 && a->ip[3] == bpf_htonl(1);
}

static __always_inline int is_tcp(struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP && BPF_CORE_READ(sk, sk_type) == SOCK_STREAM;
}

/* sock_recv_length(sk, ret, flags): a read returned ret bytes. copied_seq has
 * moved past them; only readers move it, and this thread was the reader. */
SEC("tp_btf/sock_recv_length")
int hoptrace_infer_recv(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int ret = (int)ctx[1];
	int flags = (int)ctx[2];
	if (ret <= 0 || (flags & MSG_PEEK))
		return 0;
	__u64 netns = netns_of(sk);
	if (!bpf_map_lookup_elem(&infer_pods, &netns) || !is_tcp(sk))
		return 0;
	struct conn_key k;
	if (inbound_key(sk, netns, &k))
		return 0;
	struct inflight *in = bpf_map_lookup_elem(&infer_inflight, &k);
	if (!in || !in->placed)
		return 0;

	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 start = BPF_CORE_READ(tp, copied_seq) - (__u32)ret;
	if (in->start - start >= (__u32)ret)
		return 0; /* this read does not hold the request's first byte */

	count(CNT_REQUEST_READ);
	__u64 id = bpf_get_current_pid_tgid();
	struct thread *t = bpf_map_lookup_elem(&infer_threads, &id);
	if (t && t->seq != in->seq) {
		/* A new request while the last one is still unanswered: this thread
		 * interleaves requests, and so may its whole process. */
		struct inflight *prev = bpf_map_lookup_elem(&infer_inflight, &t->conn);
		if (prev && prev->seq == t->seq && !prev->answered) {
			__u32 tgid = id >> 32, one = 1;
			bpf_map_update_elem(&infer_async, &tgid, &one, BPF_ANY);
			count(CNT_MULTIPLEXED);
		}
	}
	struct thread nt = {};
	nt.conn = k;
	nt.seq = in->seq;
	bpf_map_update_elem(&infer_threads, &id, &nt, BPF_ANY);
	return 0;
}

/* tcp_sendmsg_locked(sk, msg, skb, size_goal), once per chunk of a write, with
 * the socket lock held: write_seq is where this chunk starts, and snd_una and
 * bytes_acked agree with each other. */
SEC("tp_btf/tcp_sendmsg_locked")
int hoptrace_infer_send(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	__u64 netns = netns_of(sk);
	struct pod *pod = bpf_map_lookup_elem(&infer_pods, &netns);
	if (!pod)
		return 0;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 write_seq = BPF_CORE_READ(tp, write_seq);

	/* The app writing on an inbound connection: its request is answered. */
	struct conn_key k;
	if (inbound_key(sk, netns, &k))
		return 0;
	struct inflight *in = bpf_map_lookup_elem(&infer_inflight, &k);
	if (in) {
		in->answered = 1;
		return 0;
	}

	/* The same connection from the proxy's end: the proxy's first write
	 * after announcing a request is its head. */
	struct conn_key pk = {};
	pk.netns_cookie = netns;
	if (sk_addr(sk, 0, &pk.addr))
		return 0;
	pk.port_a = k.port_b;
	pk.port_b = k.port_a;
	in = bpf_map_lookup_elem(&infer_inflight, &pk);
	if (in) {
		if (!in->placed) {
			in->start = write_seq;
			in->placed = 1;
		}
		return 0;
	}

	if (k.port_a != pod->outbound_port || !is_loopback(&k.addr))
		return 0;

	/* A captured outbound connection: key it by the app's end and the
	 * offset of this write from the connection's first data byte. The app
	 * connected, so bytes_acked counts its SYN too: snd_una - bytes_acked
	 * is the initial sequence number, and data starts one after it. */
	struct conn_key out = pk;
	out.port_b = pod->outbound_port;
	__u32 isn = BPF_CORE_READ(tp, snd_una) - (__u32)BPF_CORE_READ(tp, bytes_acked);
	out.offset = write_seq - isn - 1;

	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct link l = {};
	l.tgid = tgid;
	struct thread *t = bpf_map_lookup_elem(&infer_threads, &id);
	if (!t) {
		l.verdict = VERDICT_NO_THREAD;
	} else if (bpf_map_lookup_elem(&infer_async, &tgid)) {
		l.verdict = VERDICT_AMBIGUOUS;
	} else {
		struct inflight *cur = bpf_map_lookup_elem(&infer_inflight, &t->conn);
		if (!cur || cur->seq != t->seq || cur->answered) {
			l.verdict = VERDICT_ANSWERED;
		} else {
			l.verdict = VERDICT_LINKED;
			l.ctx = cur->ctx;
		}
	}
	bpf_map_update_elem(&infer_links, &out, &l, BPF_ANY);
	count(CNT_WRITE_RECORDED);
	return 0;
}
