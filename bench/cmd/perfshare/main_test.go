package main

import (
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/bench"
)

// Three samples: one in tracing, one in the observer under legs.finish
// (untraced work: excluded), one elsewhere.
const script = `hoptrace 123 1000.1: 1 cpu-clock:ppp:
	ffffffff81000000 pvm_irq_enable+0x5 ([kernel.kallsyms])
	91c040 github.com/hoptrace/hoptrace/exporter.appendSpan+0x25 (/bin/hoptrace)
	91c000 github.com/hoptrace/hoptrace/exporter.(*Exporter).run+0x10 (/bin/hoptrace)

hoptrace 123 1000.2: 1 cpu-clock:ppp:
	81c040 github.com/hoptrace/hoptrace/agent.(*podObserver).ObserveRequest+0x21d (/bin/hoptrace)
	81c000 github.com/hoptrace/hoptrace/proxy.(*legs).finish+0x99 (/bin/hoptrace)

hoptrace 123 1000.3: 1 cpu-clock:ppp:
	71c040 internal/runtime/syscall/linux.Syscall6+0x1 (/bin/hoptrace)
`

func TestCount(t *testing.T) {
	tr := presets["tracing"]
	total, matched, err := count(strings.NewReader(script), filter{include: split(tr.include), exclude: split(tr.exclude)})
	if err != nil {
		t.Fatal(err)
	}
	if total != 3 || matched != 1 {
		t.Errorf("total %d, matched %d; want 3 and 1", total, matched)
	}
}

// A system-wide profile: the app's connect runs hoptrace's connect4 program,
// its socket's free frees the socket storage, the agent looks up an original
// destination, and a sample of idle time; iptables' hook in another sample.
const systemScript = `fortio
	ffffffff81a00000 lookup_nulls_elem_raw
	ffffffff81a10000 bpf_prog_c0fc31bb9f11caa1_hoptrace_connect4
	ffffffff81a20000 __cgroup_bpf_run_filter_sock_addr
	ffffffff81a30000 tcp_v4_pre_connect

fortio
	ffffffff81b00000 bpf_local_storage_destroy
	ffffffff81b10000 bpf_sk_storage_free
	ffffffff81b20000 __sk_destruct

hoptrace
	ffffffff81c00000 pvm_irq_enable
	c00000 github.com/cilium/ebpf.(*Map).lookupAndDelete
	c10000 github.com/hoptrace/hoptrace/redirect.outboundResolver.OriginalDst

hoptrace
	c20000 github.com/hoptrace/hoptrace/proxy.(*Proxy).serveConn

swapper
	ffffffff82242055 pvm_safe_halt_hc

fortio
	ffffffff81d00000 __nf_conntrack_find_get
	ffffffff81d10000 nf_hook_slow
`

func TestCountCapture(t *testing.T) {
	for _, tt := range []struct {
		name   string
		f      filter
		wantOf int
	}{
		{"capture-bpf", filter{include: split(presets["capture-bpf"].include)}, 3},
		{"capture-netfilter", filter{include: split(presets["capture-netfilter"].include)}, 1},
		{"the agent's samples", filter{include: []string{everything}, comm: "hoptrace"}, 2},
		{"the agent's capture", filter{include: split(presets["capture-bpf"].include), comm: "hoptrace"}, 1},
	} {
		total, matched, err := count(strings.NewReader(systemScript), tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if total != 6 || matched != tt.wantOf {
			t.Errorf("%s: total %d, matched %d; want 6 and %d", tt.name, total, matched, tt.wantOf)
		}
	}
}

func TestPerRequest(t *testing.T) {
	r := bench.Result{Setup: "hoptrace-0", Scenario: "http-close-max", RPS: 5000, Requests: 15000, CPUSeconds: 1.5}
	// A tenth of the process's 100 µs per request.
	if got, want := perRequest(0.1, 0, r), ": 10.00 µs/req"; !strings.HasSuffix(got, want) {
		t.Errorf("process: %q, want ...%q", got, want)
	}
	// 1 % of two CPUs' time at 5,000 requests a second: 4 µs of the machine's per request.
	if got, want := perRequest(0.01, 2, r), "of 2 CPUs (hoptrace-0 http-close-max, 5000 req/s): 4.00 µs/req"; !strings.HasSuffix(got, want) {
		t.Errorf("machine: %q, want ...%q", got, want)
	}
}
