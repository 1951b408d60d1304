package redirect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"

	"github.com/hoptrace/hoptrace/bpf"
	"github.com/hoptrace/hoptrace/cgroup2"
	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
)

func hostPort(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }

// Shown: a process in pod A connecting to pod B's IPv4 and IPv6 address lands in
// the outbound listener, and the look-up returns the exact original destination.
func TestOutboundCaptureRecoversOriginalDestination(t *testing.T) {
	g := newRig(t)
	a, b := g.pod(t, "a"), g.pod(t, "b")
	att := g.attach(t, a, nil)
	go serveOrigDst(att.Outbound, att.OutboundResolver(), "proxy")

	targets := []string{hostPort(b.IPv4, 8080), hostPort(b.IPv6, 8443)}
	got := connectFrom(t, a, targets...)
	for _, target := range targets {
		if want := "proxy " + target; got[target] != want {
			t.Errorf("connect %s: got %q, want %q", target, got[target], want)
		}
	}
}

// Shown: 200 concurrent connections from several pods all resolve correctly,
// each family's listener served on its own.
func TestConcurrentCaptureAcrossPods(t *testing.T) {
	g := newRig(t)
	dst := g.pod(t, "dst")
	var clients []*nodebox.Pod
	for _, name := range []string{"c1", "c2", "c3", "c4"} {
		p := g.pod(t, name)
		att := g.attach(t, p, nil)
		for _, ln := range att.OutboundListeners() { // IPv4 and IPv6, as the agent serves them
			go serveOrigDst(ln, att.OutboundResolver(), name)
		}
		clients = append(clients, p)
	}
	errs := make(chan error, len(clients))
	for i, p := range clients {
		go func() {
			var targets []string
			for j := range 50 {
				addr := dst.IPv4
				if j%2 == 1 {
					addr = dst.IPv6
				}
				targets = append(targets, hostPort(addr, uint16(10000+i*100+j)))
			}
			// connectFrom calls t.Fatal only from this goroutine's perspective via
			// a sub-test-safe path: collect errors instead.
			got, err := connectFromErr(p, targets)
			if err != nil {
				errs <- err
				return
			}
			for _, target := range targets {
				if want := p.Name + " " + target; got[target] != want {
					errs <- fmt.Errorf("pod %s → %s: got %q, want %q", p.Name, target, got[target], want)
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func connectFromErr(p *nodebox.Pod, targets []string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envClient+"=1", envTargets+"="+strings.Join(targets, ","))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := p.Run(cmd); err != nil {
		return nil, fmt.Errorf("client in pod %s: %w: %s", p.Name, err, stderr.String())
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		target, resp, _ := strings.Cut(line, "\t")
		got[target] = resp
	}
	return got, nil
}

// Shown: a connection to pod B's captured port lands in B's inbound listener with
// the original destination as local address; excluded ports, ports outside a
// configured set and other pods' traffic are untouched.
func TestInboundCapture(t *testing.T) {
	g := newRig(t)
	client, b, e, other := g.pod(t, "client"), g.pod(t, "b"), g.pod(t, "e"), g.pod(t, "other")
	for _, p := range []*nodebox.Pod{b, e, other} {
		serveApp(t, p, "app-"+p.Name, "0.0.0.0:8080", "0.0.0.0:9090", "0.0.0.0:7070", "[::]:18080")
	}
	attB := g.attach(t, b, func(p *Pod) { p.SkipInboundPorts = []uint16{9090} })
	attE := g.attach(t, e, func(p *Pod) { p.InboundPorts = []uint16{8080} })
	for _, att := range []*Attachment{attB, attE} {
		go func() {
			for {
				c, err := att.Inbound.Accept()
				if err != nil {
					return
				}
				dst, err := att.InboundResolver().OriginalDst(c)
				fmt.Fprintf(c, "inbound-%s %s %v\n", att.Pod.ID, dst, err)
				c.Close()
			}
		}()
	}

	cases := []struct{ target, wantPrefix string }{
		{hostPort(b.IPv4, 8080), "inbound-test/b " + hostPort(b.IPv4, 8080) + " <nil>"},
		{hostPort(b.IPv6, 18080), "inbound-test/b " + hostPort(b.IPv6, 18080) + " <nil>"},
		{hostPort(b.IPv4, 7070), "inbound-test/b " + hostPort(b.IPv4, 7070) + " <nil>"},
		{hostPort(b.IPv4, 9090), "app-b " + hostPort(b.IPv4, 9090)},          // excluded port
		{hostPort(e.IPv4, 8080), "inbound-test/e " + hostPort(e.IPv4, 8080)}, // in the configured set
		{hostPort(e.IPv4, 7070), "app-e " + hostPort(e.IPv4, 7070)},          // outside the set
		{hostPort(other.IPv4, 8080), "app-other "},                           // pod not attached
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range cases {
		line := dialLine(t, ctx, client, tc.target)
		if !strings.HasPrefix(line, tc.wantPrefix) {
			t.Errorf("connect %s: got %q, want prefix %q", tc.target, line, tc.wantPrefix)
		}
	}
}

func dialLine(t *testing.T, ctx context.Context, from *nodebox.Pod, target string) string {
	t.Helper()
	c, err := from.Dial(ctx, "tcp", target)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", target, from.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", target, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// Shown: with the agent's listeners closed, new connections in both directions go
// straight to their destination.
// With the sk_msg fast path on, the same holds: a closed listener's accepted and
// dialed sockets leave the fast path with it.
func TestFailOpenWhenListenersClose(t *testing.T) {
	t.Run("capture", func(t *testing.T) { testFailOpen(t) })
	t.Run("fast path", func(t *testing.T) { testFailOpen(t, withFastPath) })
}

func testFailOpen(t *testing.T, opts ...func(*Config)) {
	g := newRig(t, opts...)
	a, b := g.pod(t, "a"), g.pod(t, "b")
	serveApp(t, b, "app-b", "0.0.0.0:8080", "[::]:8080")
	attA := g.attach(t, a, nil)
	attB := g.attach(t, b, nil)
	go serveOrigDst(attA.Outbound, attA.OutboundResolver(), "proxy")
	go serveOrigDst(attB.Inbound, attB.InboundResolver(), "inbound")

	target4, target6 := hostPort(b.IPv4, 8080), hostPort(b.IPv6, 8080)
	got := connectFrom(t, a, target4, target6)
	if got[target4] != "proxy "+target4 {
		t.Fatalf("before: %q, want capture", got[target4])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if line := dialLine(t, ctx, a, target4); !strings.HasPrefix(line, "inbound ") {
		t.Fatalf("inbound before: %q, want capture", line)
	}

	attA.Outbound.Close()
	attA.Inbound.Close()
	attB.Outbound.Close()
	attB.Inbound.Close()

	got = connectFrom(t, a, target4, target6)
	for _, target := range []string{target4, target6} {
		if !strings.HasPrefix(got[target], "app-b "+target) {
			t.Errorf("outbound after listeners closed: %s → %q, want the app", target, got[target])
		}
	}
	if line := dialLine(t, ctx, a, target6); !strings.HasPrefix(line, "app-b "+target6) {
		t.Errorf("inbound after listeners closed: %q, want the app", line)
	}
}

// Shown: the proxy's own upstream dial from pod A's netns reaches B
// unredirected, and a dial from 127.0.0.6 to the local app is not captured.
func TestProxyDialsAreNotCaptured(t *testing.T) {
	t.Run("capture", func(t *testing.T) { testProxyDials(t) })
	t.Run("fast path", func(t *testing.T) { testProxyDials(t, withFastPath) })
}

func testProxyDials(t *testing.T, opts ...func(*Config)) {
	g := newRig(t, opts...)
	a, b := g.pod(t, "a"), g.pod(t, "b")
	serveApp(t, b, "app-b", "0.0.0.0:8080", "[::]:8080")
	attA := g.attach(t, a, nil)
	attB := g.attach(t, b, nil)
	go serveOrigDst(attA.Outbound, attA.OutboundResolver(), "outbound-a")
	go serveOrigDst(attB.Inbound, attB.InboundResolver(), "inbound-b")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	read := func(d Dialer, target string) string {
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSuffix(line, "\n")
	}
	// Outbound leg: not looped back into A's outbound listener; it arrives at B's
	// inbound capture (the next leg), from A's own address.
	for _, target := range []string{hostPort(b.IPv4, 8080), hostPort(b.IPv6, 8080)} {
		if line := read(attA.OutboundDialer(), target); line != "inbound-b "+target {
			t.Errorf("outbound dial %s: got %q, want B's inbound listener", target, line)
		}
	}
	// Inbound leg: reaches B's app, from 127.0.0.6 (IPv4) or B's own address (IPv6).
	line := read(attB.InboundDialer(), hostPort(b.IPv4, 8080))
	if want := "app-b " + hostPort(b.IPv4, 8080) + " 127.0.0.6:"; !strings.HasPrefix(line, want) {
		t.Errorf("inbound dial v4: got %q, want prefix %q", line, want)
	}
	line = read(attB.InboundDialer(), hostPort(b.IPv6, 8080))
	if want := "app-b " + hostPort(b.IPv6, 8080) + " [" + b.IPv6.String() + "]:"; !strings.HasPrefix(line, want) {
		t.Errorf("inbound dial v6: got %q, want prefix %q", line, want)
	}
}

func countFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func objectIDs(t *testing.T, r *Redirector) (progs []ebpf.ProgramID) {
	for _, p := range []*ebpf.Program{r.progs.Connect4, r.progs.Connect6, r.progs.Sockops, r.progs.SkLookup,
		r.progs.Getpeername4, r.progs.Getpeername6, r.progs.Getsockname4, r.progs.Getsockname6} {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		progs = append(progs, id)
	}
	return progs
}

// Shown: attaching and detaching 50 pods in a loop leaks no fds, goroutines, BPF
// objects or pins, and Close leaves nothing behind.
func TestAttachDetachLoopLeaksNothing(t *testing.T) {
	testenv.RequirePrivileged(t)
	pin := testenv.TempBPFFS(t)
	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	var pods []*nodebox.Pod
	for i := range 50 {
		p, err := node.AddPod(fmt.Sprintf("p%d", i))
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}

	fds0, gor0 := countFDs(t), runtime.NumGoroutine()
	r, err := Open(Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	progIDs := objectIDs(t, r)
	var linkIDs []link.ID
	for round := range 3 {
		var atts []*Attachment
		for _, p := range pods {
			att, err := r.Attach(Pod{ID: p.Name, CgroupDir: p.CgroupDir, NetnsPath: p.NetnsPath})
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			atts = append(atts, att)
		}
		if round == 0 {
			for _, pl := range atts[0].links {
				info, err := pl.link.Info()
				if err != nil {
					t.Fatal(err)
				}
				linkIDs = append(linkIDs, info.ID)
			}
		}
		for _, p := range pods {
			if err := r.Detach(p.Name); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if entries, _ := os.ReadDir(r.podsDir); len(entries) != 0 {
			t.Fatalf("round %d: pod pins left: %v", round, entries)
		}
		if ids, _ := r.Pinned(); len(ids) != 0 {
			t.Fatalf("round %d: pods still recorded: %v", round, ids)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(pin)
		t.Errorf("pin dir left behind: %v", entries)
	}
	for _, id := range progIDs {
		if p, err := ebpf.NewProgramFromID(id); err == nil {
			p.Close()
			t.Errorf("program %d still loaded after Close", id)
		}
	}
	for _, id := range linkIDs {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			t.Errorf("link %d still exists after Close", id)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fds, gor := countFDs(t), runtime.NumGoroutine()
		if fds <= fds0 && gor <= gor0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leak: fds %d → %d, goroutines %d → %d", fds0, fds, gor0, gor)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Shown: a second loader adopts the pins of a first one that was killed; pods
// fail open in between; capture works again with no program attached twice.
func TestRestartAdoptsPins(t *testing.T) {
	testenv.RequirePrivileged(t)
	pin := testenv.TempBPFFS(t)
	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	a, _ := node.AddPod("a")
	b, _ := node.AddPod("b")
	ln, err := b.Listen("tcp4", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveTag(ln, "app-b")
	target := hostPort(b.IPv4, 8080)

	// The first agent is a separate process, killed with SIGKILL.
	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(), envAgent+"="+strings.Join([]string{"pod-a", a.CgroupDir, a.NetnsPath, pin}, "|"))
	stdout, _ := agent.StdoutPipe()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("first agent: %q", line)
	}
	if got := connectFrom(t, a, target)[target]; got != "agent1 "+target {
		t.Fatalf("first agent capture: %q", got)
	}
	agent.Process.Kill()
	agent.Wait()

	if got := connectFrom(t, a, target)[target]; !strings.HasPrefix(got, "app-b ") {
		t.Fatalf("with the agent dead: %q, want the app (fail-open)", got)
	}

	r, err := Open(Config{PinDir: pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	ids, err := r.Pinned()
	if err != nil || len(ids) != 1 || ids[0] != "pod-a" {
		t.Fatalf("Pinned() = %v, %v; want [pod-a]", ids, err)
	}
	att, err := r.Attach(Pod{ID: "pod-a", CgroupDir: a.CgroupDir, NetnsPath: a.NetnsPath})
	if err != nil {
		t.Fatal(err)
	}
	go serveOrigDst(att.Outbound, att.OutboundResolver(), "agent2")
	if got := connectFrom(t, a, target)[target]; got != "agent2 "+target {
		t.Fatalf("second agent capture: %q", got)
	}
	cg, err := os.Open(a.CgroupDir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupSockOps,
		ebpf.AttachCgroupInet4GetPeername, ebpf.AttachCgroupInet6GetPeername, ebpf.AttachCgroupInet4GetSockname, ebpf.AttachCgroupInet6GetSockname} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Programs) != 1 {
			t.Errorf("%v: %d programs attached to the pod cgroup, want 1", at, len(res.Programs))
		}
	}
}

// Shown: bad input gives a clear error naming it and leaves no partial state.
func TestAttachBadInput(t *testing.T) {
	g := newRig(t)
	a := g.pod(t, "a")

	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pod  Pod
		want error
	}{
		{"netns vanished", Pod{ID: "x1", CgroupDir: a.CgroupDir, NetnsPath: "/run/netns/ht-does-not-exist"}, ErrNetnsGone},
		{"netns of an exited process", Pod{ID: "x2", CgroupDir: a.CgroupDir, NetnsPath: fmt.Sprintf("/proc/%d/ns/net", gone.Process.Pid)}, ErrNetnsGone},
		{"not a netns", Pod{ID: "x3", CgroupDir: a.CgroupDir, NetnsPath: "/proc/self/ns/pid"}, ErrNotNetns},
		{"cgroup not v2", Pod{ID: "x4", CgroupDir: t.TempDir(), NetnsPath: a.NetnsPath}, cgroup2.ErrNotV2},
		{"cgroup missing", Pod{ID: "x5", CgroupDir: "/sys/fs/cgroup/ht-missing", NetnsPath: a.NetnsPath}, os.ErrNotExist},
		{"empty id", Pod{CgroupDir: a.CgroupDir, NetnsPath: a.NetnsPath}, ErrInvalidPod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.r.Attach(tt.pod)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Attach: %v, want %v", err, tt.want)
			}
			t.Logf("error: %v", err)
			if ids, _ := g.r.Pinned(); len(ids) != 0 {
				t.Errorf("pods recorded after failed attach: %v", ids)
			}
			if entries, _ := os.ReadDir(g.r.podsDir); len(entries) != 0 {
				t.Errorf("pins after failed attach: %v", entries)
			}
		})
	}

	// A pod whose netns disappears after attach still detaches cleanly.
	att := g.attach(t, a, nil)
	_ = att
	if err := g.node.RemovePod("a"); err != nil {
		t.Fatal(err)
	}
	if err := g.r.Detach("test/a"); err != nil {
		t.Errorf("detach a vanished pod: %v", err)
	}
	if err := g.r.Detach("test/a"); !errors.Is(err, ErrNotAttached) {
		t.Errorf("second detach: %v, want ErrNotAttached", err)
	}
}

// Shown: a missing kernel feature is named, wrapped in ErrUnsupportedKernel. The
// probe is real: sk_lookup programs may not call bpf_xdp_adjust_head.
func TestMissingKernelFeatureIsNamed(t *testing.T) {
	testenv.RequirePrivileged(t)
	reqs := append(Requirements(), Requirement{
		Name:  "helper xdp_adjust_head in sk_lookup",
		Probe: func() error { return features.HaveProgramHelper(ebpf.SkLookup, asm.FnXdpAdjustHead) },
	})
	err := checkRequirements(reqs)
	if !errors.Is(err, ErrUnsupportedKernel) {
		t.Fatalf("got %v, want ErrUnsupportedKernel", err)
	}
	if !strings.Contains(err.Error(), "helper xdp_adjust_head in sk_lookup") {
		t.Errorf("error does not name the feature: %v", err)
	}
	if strings.Contains(err.Error(), "sock_ops") {
		t.Errorf("error names features that are present: %v", err)
	}
	if err := Supported(); err != nil {
		t.Errorf("this kernel should support everything: %v", err)
	}
}

// benchPods makes a node with one attached pod "a" for a benchmark.
func benchPods(b *testing.B) (*nodebox.Node, *Attachment) {
	testenv.RequirePrivileged(b)
	pin := testenv.TempBPFFS(b)
	node, err := nodebox.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { node.Close() })
	p, err := node.AddPod("a")
	if err != nil {
		b.Fatal(err)
	}
	r, err := Open(Config{PinDir: pin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	att, err := r.Attach(Pod{ID: "a", CgroupDir: p.CgroupDir, NetnsPath: p.NetnsPath})
	if err != nil {
		b.Fatal(err)
	}
	return node, att
}

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// BenchmarkOriginalDst measures the proxy's per-connection look-up when the
// record is in orig_by_port (the ring was full): one map update (standing in
// for the kernel's sockops write) plus a look at the empty ring and the
// lookup-and-delete. From the ring there is no system call at all.
func BenchmarkOriginalDst(b *testing.B) {
	_, att := benchPods(b)
	res := att.OutboundResolver().(outboundResolver)
	conn := addrConn{remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
	key := bpfPortKey(att.NetnsCookie, 40000)
	val := bpfOrigDst(netip.MustParseAddrPort("10.1.2.3:8080"))
	b.ReportAllocs()
	for b.Loop() {
		if err := res.t.fallback.Put(&key, &val); err != nil {
			b.Fatal(err)
		}
		if _, err := res.OriginalDst(conn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPodDial measures a dial from inside a pod's netns (thread switch in
// and out included) to a listener in another pod, against the same dial made
// from a thread that is already there.
func BenchmarkPodDial(b *testing.B) {
	node, att := benchPods(b)
	a := node.Pods()[0]
	dst, err := node.AddPod("b")
	if err != nil {
		b.Fatal(err)
	}
	ln, err := dst.Listen("tcp4", "0.0.0.0:8080")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	target := hostPort(dst.IPv4, 8080)
	ctx := context.Background()
	b.Run("redirect-dialer", func(b *testing.B) {
		d := att.OutboundDialer()
		b.ReportAllocs()
		for b.Loop() {
			c, err := d.DialContext(ctx, "tcp", target)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("already-in-netns", func(b *testing.B) {
		b.ReportAllocs()
		err := a.Do(func() error {
			var d net.Dialer
			for b.Loop() {
				c, err := d.DialContext(ctx, "tcp", target)
				if err != nil {
					return err
				}
				c.Close()
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	})
}

// The pod dialer reports refusals and honours its context.
func TestPodDialerErrors(t *testing.T) {
	g := newRig(t)
	a, b := g.pod(t, "a"), g.pod(t, "b")
	att := g.attach(t, a, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := att.OutboundDialer().DialContext(ctx, "tcp", hostPort(b.IPv4, 9))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial a closed port: %v, want ECONNREFUSED", err)
	}
	// 10.199.x.250 is in the node's subnet but no pod has it: ARP never answers.
	silent := netip.AddrFrom4([4]byte{b.IPv4.As4()[0], b.IPv4.As4()[1], b.IPv4.As4()[2], 250})
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	start := time.Now()
	_, err = att.OutboundDialer().DialContext(short, "tcp", hostPort(silent, 80))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial a silent address: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dial took %s despite a 300ms deadline", d)
	}
	if _, err := att.OutboundDialer().DialContext(ctx, "tcp", "hello:80"); err == nil {
		t.Error("dial of a name succeeded; the proxy only dials addresses")
	}
}

// Shown: bypasses reach the event ring buffer with pod, pid, comm, original
// destination and reason; connections captured as intended are counted; with
// AllEvents they are events too.
func TestRedirectEvents(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("AllEvents=%v", all), func(t *testing.T) {
			testRedirectEvents(t, all)
		})
	}
}

func testRedirectEvents(t *testing.T, all bool) {
	g := newRig(t, func(c *Config) { c.AllEvents = all })
	a, b := g.pod(t, "a"), g.pod(t, "b")
	er, err := g.r.Events()
	if err != nil {
		t.Fatal(err)
	}
	defer er.Close()
	before, err := g.r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	attA := g.attach(t, a, func(p *Pod) { p.SkipOutboundPorts = []uint16{9999} })
	attB := g.attach(t, b, nil)
	go serveOrigDst(attA.Outbound, attA.OutboundResolver(), "proxy")
	go serveOrigDst(attB.Inbound, attB.InboundResolver(), "inbound")

	connectFrom(t, a, hostPort(b.IPv4, 8080), hostPort(b.IPv4, 9999))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialLine(t, ctx, a, hostPort(b.IPv4, 7070)) // from the test process: inbound capture only

	events := make(chan Event, 64)
	go func() {
		for {
			ev, err := er.Read()
			if err != nil {
				close(events)
				return
			}
			events <- ev
		}
	}()
	want := map[string]bool{"excluded-port": false}
	if all {
		want["redirected"], want["captured"] = false, false
	}
	seen := func() bool {
		for _, ok := range want {
			if !ok {
				return false
			}
		}
		return true
	}
	for !seen() {
		select {
		case ev := <-events:
			switch {
			case ev.Reason == ReasonRedirected && ev.Dst.String() == hostPort(b.IPv4, 8080):
				if !all {
					t.Errorf("redirected event without AllEvents: %+v", ev)
				}
				if ev.PodID != "test/a" || ev.Direction != Outbound || ev.PID == 0 || ev.Comm == "" {
					t.Errorf("redirected event: %+v", ev)
				}
				want["redirected"] = true
			case ev.Reason == ReasonExcludedPort && ev.Dst.String() == hostPort(b.IPv4, 9999):
				if ev.PodID != "test/a" || ev.Reason.Redirected() || ev.PID == 0 || ev.Comm == "" {
					t.Errorf("excluded-port event: %+v", ev)
				}
				want["excluded-port"] = true
			case ev.Reason == ReasonInboundCaptured && ev.Dst.String() == hostPort(b.IPv4, 7070):
				if !all {
					t.Errorf("captured event without AllEvents: %+v", ev)
				}
				if ev.PodID != "test/b" || ev.Direction != Inbound || ev.Src.Addr() != a.IPv4 {
					t.Errorf("inbound event: %+v", ev)
				}
				want["captured"] = true
			}
		case <-ctx.Done():
			t.Fatalf("events seen: %v", want)
		}
	}
	after, err := g.r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// a→b:8080 is redirected to a's proxy stub, which dials nothing; a→b:9999
	// bypasses a's proxy and, like the test process's dial to b:7070, is
	// captured at b.
	if got := after.Redirected - before.Redirected; got != 1 {
		t.Errorf("Redirected counted %d, want 1", got)
	}
	if got := after.Captured - before.Captured; got != 2 {
		t.Errorf("Captured counted %d, want 2", got)
	}
	if after.EventsLost != 0 {
		t.Errorf("EventsLost = %d", after.EventsLost)
	}
}

// Connections that stay inside the pod (loopback, and the unspecified address,
// which means this host) are not captured.
func TestLocalDestinationsNotCaptured(t *testing.T) {
	g := newRig(t)
	a := g.pod(t, "a")
	serveApp(t, a, "app-a", "0.0.0.0:7000", "[::]:7000")
	att := g.attach(t, a, nil)
	go serveOrigDst(att.Outbound, att.OutboundResolver(), "proxy")
	targets := []string{"127.0.0.1:7000", "0.0.0.0:7000", "[::1]:7000", "[::]:7000"}
	got := connectFrom(t, a, targets...)
	for _, target := range targets {
		if !strings.HasPrefix(got[target], "app-a ") {
			t.Errorf("connect %s: %q, want the pod's own app", target, got[target])
		}
	}
}

// The original destinations reach the proxy through orig_ring; when the ring
// is full (an agent that stopped accepting) sockops puts them in orig_by_port
// instead and the proxy finds them there: every connection still goes where
// its app sent it. The second round wraps around the ring's end.
func TestOriginalDstWhenTheRingIsFull(t *testing.T) {
	page := uint32(os.Getpagesize())
	g := newRig(t, func(c *Config) { c.origRingSize = page })
	p := g.pod(t, "a")
	att := g.attach(t, p, nil)
	res := att.OutboundResolver()
	// More connections than the ring has records for (56 bytes each).
	n := int(page)/56 + 30
	for round := range 2 {
		// Accept them all before looking any up: the ring fills meanwhile.
		accepted := make(chan []net.Conn, 1)
		go func() {
			var cs []net.Conn
			for len(cs) < n {
				c, err := att.Outbound.Accept()
				if err != nil {
					break
				}
				cs = append(cs, c)
			}
			accepted <- cs
			for _, c := range cs {
				dst, err := res.OriginalDst(c)
				fmt.Fprintf(c, "%s %v\n", dst, err)
				c.Close()
			}
		}()
		var targets []string
		for i := range n {
			targets = append(targets, fmt.Sprintf("10.250.%d.%d:%d", round, i%250+1, 10000+i))
		}
		got := connectFrom(t, p, targets...)
		if cs := <-accepted; len(cs) != n {
			t.Fatalf("round %d: accepted %d of %d", round, len(cs), n)
		}
		for _, target := range targets {
			if want := target + " <nil>"; got[target] != want {
				t.Errorf("round %d: %s answered %q, want %q", round, target, got[target], want)
			}
		}
	}
	c, err := g.r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	fromMap := c.OrigFromMap
	if fromMap == 0 || fromMap >= uint64(2*n) {
		t.Errorf("%d of %d destinations from orig_by_port: want some, the rest from the ring", fromMap, 2*n)
	}
}

// Records whose connection is never accepted do not pile up: a detached pod's
// are dropped at once, anyone's after pendingTTL.
func TestUnclaimedOriginalDstsAreDropped(t *testing.T) {
	g := newRig(t)
	p := g.pod(t, "a")
	att := g.attach(t, p, nil)
	go serveOrigDst(att.Outbound, att.OutboundResolver(), "agent")
	o := g.r.orig
	old := time.Now().Add(-2 * pendingTTL)
	o.mu.Lock()
	for i := range pendingSweepAbove + 10 {
		o.pending[bpf.RedirectPortKey{NetnsCookie: 1, Port: uint16(i), Family: afInet}] = pendingDst{seen: old}
	}
	o.pending[bpf.RedirectPortKey{NetnsCookie: att.NetnsCookie, Port: 1, Family: afInet}] = pendingDst{seen: time.Now()}
	o.mu.Unlock()
	// A connection's record makes the next look-up sweep.
	target := "10.250.0.1:8080"
	if got := connectFrom(t, p, target)[target]; got != "agent "+target {
		t.Fatalf("answered %q", got)
	}
	if left := pendingCount(o); left != 1 {
		t.Errorf("%d records left after the sweep, want the pod's fresh one", left)
	}
	if err := g.r.Detach(att.Pod.ID); err != nil {
		t.Fatal(err)
	}
	if left := pendingCount(o); left != 0 {
		t.Errorf("%d records left after the pod's detach", left)
	}
	if c, err := g.r.Counters(); err != nil || c.OrigUnclaimed != pendingSweepAbove+11 {
		t.Errorf("%d counted unclaimed (%v), want %d", c.OrigUnclaimed, err, pendingSweepAbove+11)
	}
}

func pendingCount(o *origTable) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending)
}

// A port used again: an unclaimed record of an earlier connection under the
// same key waits in pending, and the connection's own, newer record wins.
func TestOriginalDstNewestRecordWins(t *testing.T) {
	g := newRig(t)
	p := g.pod(t, "a")
	att := g.attach(t, p, nil)
	o := g.r.orig
	go func() {
		for {
			c, err := att.Outbound.Accept()
			if err != nil {
				return
			}
			ra := c.RemoteAddr().(*net.TCPAddr)
			key := bpf.RedirectPortKey{NetnsCookie: att.NetnsCookie, Port: uint16(ra.Port), Family: afInet}
			o.mu.Lock()
			o.pending[key] = pendingDst{dst: netip.MustParseAddrPort("10.9.9.9:9"), seen: time.Now()}
			o.mu.Unlock()
			dst, err := att.OutboundResolver().OriginalDst(c)
			fmt.Fprintf(c, "%s %v\n", dst, err)
			c.Close()
		}
	}()
	target := "10.250.0.1:8080"
	if got := connectFrom(t, p, target)[target]; got != target+" <nil>" {
		t.Errorf("answered %q, want %q", got, target+" <nil>")
	}
	if got := o.stale.Load(); got != 1 {
		t.Errorf("%d counted stale, want the older record", got)
	}
}
