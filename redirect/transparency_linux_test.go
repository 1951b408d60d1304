package redirect

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/bpf"
	"github.com/hoptrace/hoptrace/nodebox"
)

// sockReport is what an app in a pod saw of one of its outbound sockets.
type sockReport struct {
	Case   string `json:"case"`
	Remote string `json:"remote,omitempty"` // Go's conn.RemoteAddr()
	Local  string `json:"local,omitempty"`  // Go's conn.LocalAddr()
	Peer   string `json:"peer"`             // getpeername(2)
	Sock   string `json:"sock"`             // getsockname(2)
	Line   string `json:"line"`             // first line the server sent
	Err    string `json:"err,omitempty"`
}

// addrsMain runs inside a pod. Each case is "dial,<target>" (Go's net.Dial),
// "mapped,<ipv4:port>" (an AF_INET6 socket connecting to the IPv4-mapped address)
// or "reconnect,<first>,<second>" (one AF_INET socket connected to first,
// disconnected with AF_UNSPEC and connected to second); it prints one sockReport
// per case as JSON.
func addrsMain(cases []string) int {
	enc := json.NewEncoder(os.Stdout)
	for _, c := range cases {
		rep := sockReport{Case: c}
		if err := reportSocket(c, &rep); err != nil {
			rep.Err = err.Error()
		}
		enc.Encode(rep)
	}
	return 0
}

func reportSocket(spec string, rep *sockReport) error {
	f := strings.Split(spec, ",")
	switch f[0] {
	case "dial":
		c, err := net.DialTimeout("tcp", f[1], 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		rep.Remote, rep.Local = c.RemoteAddr().String(), c.LocalAddr().String()
		sc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		var nerr error
		if err := sc.Control(func(fd uintptr) { nerr = socketNames(int(fd), rep) }); err != nil {
			return err
		}
		if nerr != nil {
			return nerr
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		rep.Line, err = bufio.NewReader(c).ReadString('\n')
		rep.Line = strings.TrimSuffix(rep.Line, "\n")
		return err
	case "mapped":
		dst := netip.MustParseAddrPort(f[1])
		fd, err := rawConnect(unix.AF_INET6, netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port()))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := socketNames(fd, rep); err != nil {
			return err
		}
		rep.Line, err = readLine(fd)
		return err
	case "reconnect":
		fd, err := rawConnect(unix.AF_INET, netip.MustParseAddrPort(f[1]))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if _, err := readLine(fd); err != nil {
			return fmt.Errorf("first connection: %w", err)
		}
		if err := disconnect(fd); err != nil {
			return fmt.Errorf("disconnect: %w", err)
		}
		if err := unix.Connect(fd, sockaddr(unix.AF_INET, netip.MustParseAddrPort(f[2]))); err != nil {
			return fmt.Errorf("second connect: %w", err)
		}
		if err := socketNames(fd, rep); err != nil {
			return err
		}
		rep.Line, err = readLine(fd)
		return err
	}
	return fmt.Errorf("unknown case %q", spec)
}

func rawConnect(family int, dst netip.AddrPort) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// SO_SNDTIMEO bounds a blocking connect, SO_RCVTIMEO the reads.
	tv := unix.Timeval{Sec: 5}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Connect(fd, sockaddr(family, dst)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", dst, err)
	}
	return fd, nil
}

// disconnect is connect(2) with AF_UNSPEC, which x/sys/unix has no Sockaddr for.
func disconnect(fd int) error {
	sa := unix.RawSockaddr{Family: unix.AF_UNSPEC}
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		return errno
	}
	return nil
}

func sockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

func readLine(fd int) (string, error) {
	var line []byte
	buf := make([]byte, 256)
	for !strings.Contains(string(line), "\n") {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return string(line), err
		}
		if n == 0 {
			return string(line), errors.New("EOF before a full line")
		}
		line = append(line, buf[:n]...)
	}
	s, _, _ := strings.Cut(string(line), "\n")
	return s, nil
}

// socketNames fills in what getpeername(2) and getsockname(2) say, as the kernel
// returns them (an IPv4-mapped address stays mapped).
func socketNames(fd int, rep *sockReport) error {
	peer, err := unix.Getpeername(fd)
	if err != nil {
		return fmt.Errorf("getpeername: %w", err)
	}
	sock, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	rep.Peer, rep.Sock = sockaddrString(peer), sockaddrString(sock)
	return nil
}

func sockaddrString(sa unix.Sockaddr) string {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	}
	return fmt.Sprintf("%T", sa)
}

// reportFrom runs addrsMain inside pod p (its cgroup and netns).
func reportFrom(t *testing.T, p *nodebox.Pod, cases ...string) map[string]sockReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envAddrs+"="+strings.Join(cases, ";"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := p.Run(cmd); err != nil {
		t.Fatalf("client in pod %s: %v: %s", p.Name, err, stderr.String())
	}
	got := map[string]sockReport{}
	dec := json.NewDecoder(strings.NewReader(stdout.String()))
	for dec.More() {
		var rep sockReport
		if err := dec.Decode(&rep); err != nil {
			t.Fatalf("client output %q: %v", stdout.String(), err)
		}
		got[rep.Case] = rep
	}
	if len(got) != len(cases) {
		t.Fatalf("client answered %d of %d cases: %s", len(got), len(cases), stdout.String())
	}
	return got
}

// proxyStub answers like serveOrigDst and remembers, by port, the peer address
// the agent's side of each accepted connection reports.
type proxyStub struct {
	mu    sync.Mutex
	peers map[uint16]netip.AddrPort
}

func (s *proxyStub) serve(ln net.Listener, res Resolver) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ra := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		s.mu.Lock()
		s.peers[ra.Port()] = ra
		s.mu.Unlock()
		go func() {
			defer c.Close()
			dst, err := res.OriginalDst(c)
			if err != nil {
				fmt.Fprintf(c, "proxy error %v\n", err)
				return
			}
			fmt.Fprintf(c, "proxy %s\n", dst)
		}()
	}
}

func (s *proxyStub) peer(port uint16) netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[port]
}

// Shown: an app's socket whose connect was redirected reports the original
// destination as its peer (getpeername, and so Go's RemoteAddr) and the pod's
// own address as its local address (getsockname), for IPv4, IPv6 and IPv4-mapped
// destinations. Sockets that were not redirected (an excluded port, a loopback
// destination, a socket reconnected elsewhere) and the agent's own sockets report
// what the kernel knows, unchanged.
func TestRedirectedSocketsReportOriginalDestination(t *testing.T) {
	g := newRig(t)
	if err := TransparencySupported(); err != nil {
		t.Fatalf("this kernel has the getpeername/getsockname hooks: %v", err)
	}
	a, b := g.pod(t, "a"), g.pod(t, "b")
	serveApp(t, b, "app-b", "0.0.0.0:9999")
	serveApp(t, a, "app-a", "127.0.0.1:7000")
	att := g.attach(t, a, func(p *Pod) { p.SkipOutboundPorts = []uint16{9999} })
	stub := &proxyStub{peers: map[uint16]netip.AddrPort{}}
	go stub.serve(att.Outbound, att.OutboundResolver())

	v4, v6 := hostPort(b.IPv4, 8080), hostPort(b.IPv6, 8443)
	mapped := hostPort(b.IPv4, 8081)
	skipped, local := hostPort(b.IPv4, 9999), "127.0.0.1:7000"
	got := reportFrom(t, a,
		"dial,"+v4, "dial,"+v6, "mapped,"+mapped,
		"dial,"+skipped, "dial,"+local, "reconnect,"+v4+","+local)
	for c, rep := range got {
		if rep.Err != "" {
			t.Fatalf("%s: %s", c, rep.Err)
		}
		t.Logf("%+v", rep)
	}

	mappedAddr := func(ip netip.Addr) netip.Addr { return netip.AddrFrom16(ip.As16()) }
	redirected := []struct {
		spec      string
		peer      string     // what the app must see as its peer
		local     netip.Addr // and as its own address
		agentPeer netip.Addr // what the agent's accepted socket must see (loopback)
	}{
		{"dial," + v4, v4, a.IPv4, netip.MustParseAddr("127.0.0.1")},
		{"dial," + v6, v6, a.IPv6, netip.IPv6Loopback()},
		{"mapped," + mapped, netip.AddrPortFrom(mappedAddr(b.IPv4), 8081).String(), mappedAddr(a.IPv4), netip.MustParseAddr("127.0.0.1")},
	}
	for _, tc := range redirected {
		rep := got[tc.spec]
		target := strings.Split(tc.spec, ",")[1]
		if want := "proxy " + target; rep.Line != want {
			t.Errorf("%s: server said %q, want %q (the connection must still go through the proxy)", tc.spec, rep.Line, want)
		}
		if rep.Peer != tc.peer {
			t.Errorf("%s: getpeername = %s, want the original destination %s", tc.spec, rep.Peer, tc.peer)
		}
		if rep.Remote != "" && rep.Remote != tc.peer {
			t.Errorf("%s: Go RemoteAddr = %s, want %s", tc.spec, rep.Remote, tc.peer)
		}
		sock, err := netip.ParseAddrPort(rep.Sock)
		if err != nil {
			t.Fatalf("%s: getsockname %q: %v", tc.spec, rep.Sock, err)
		}
		if sock.Addr() != tc.local {
			t.Errorf("%s: getsockname = %s, want the pod's own address %s", tc.spec, rep.Sock, tc.local)
		}
		if rep.Local != "" && rep.Local != rep.Sock {
			t.Errorf("%s: Go LocalAddr = %s, want %s", tc.spec, rep.Local, rep.Sock)
		}
		// The port is the socket's real one, and the agent's side of the same
		// connection still sees the loopback truth (its resolver depends on it).
		if ap := stub.peer(sock.Port()); ap.Addr() != tc.agentPeer {
			t.Errorf("%s: the proxy's accepted socket reports peer %s for port %d, want %s", tc.spec, ap, sock.Port(), tc.agentPeer)
		}
	}

	unchanged := []struct {
		spec, linePrefix, peer string
		local                  netip.Addr
	}{
		{"dial," + skipped, "app-b", skipped, a.IPv4},
		{"dial," + local, "app-a", local, netip.MustParseAddr("127.0.0.1")},
		{"reconnect," + v4 + "," + local, "app-a", local, netip.MustParseAddr("127.0.0.1")},
	}
	for _, tc := range unchanged {
		rep := got[tc.spec]
		if !strings.HasPrefix(rep.Line, tc.linePrefix) {
			t.Errorf("%s: server said %q, want %s", tc.spec, rep.Line, tc.linePrefix)
		}
		if rep.Peer != tc.peer {
			t.Errorf("%s: getpeername = %s, want %s", tc.spec, rep.Peer, tc.peer)
		}
		if sock, _ := netip.ParseAddrPort(rep.Sock); sock.Addr() != tc.local {
			t.Errorf("%s: getsockname = %s, want address %s", tc.spec, rep.Sock, tc.local)
		}
	}

	// The agent's own dial from the pod's netns is not the pod's socket.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := att.OutboundDialer().DialContext(ctx, "tcp", skipped)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ra := c.RemoteAddr().String(); ra != skipped {
		t.Errorf("agent's upstream socket: RemoteAddr %s, want %s", ra, skipped)
	}
}

// cgroupPrograms counts the programs attached to cgroup dir for each attach type.
func cgroupPrograms(t *testing.T, dir string, types ...ebpf.AttachType) map[ebpf.AttachType]int {
	t.Helper()
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	n := map[ebpf.AttachType]int{}
	for _, at := range types {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
		if err != nil {
			t.Fatal(err)
		}
		n[at] = len(res.Programs)
	}
	return n
}

var sockNameHooks = []ebpf.AttachType{
	ebpf.AttachCgroupInet4GetPeername, ebpf.AttachCgroupInet6GetPeername,
	ebpf.AttachCgroupInet4GetSockname, ebpf.AttachCgroupInet6GetSockname,
}

// Shown: Detach removes the transparency links and the pod's address entry with
// the rest.
func TestDetachRemovesTransparency(t *testing.T) {
	g := newRig(t)
	a := g.pod(t, "a")
	att := g.attach(t, a, nil)
	for at, n := range cgroupPrograms(t, a.CgroupDir, sockNameHooks...) {
		if n != 1 {
			t.Errorf("%v: %d programs attached after Attach, want 1", at, n)
		}
	}
	var local bpf.RedirectPodLocal
	if err := g.r.maps.PodsLocal.Lookup(&att.NetnsCookie, &local); err != nil {
		t.Fatalf("pod addresses not recorded: %v", err)
	}
	if got := fromBPFAddr(local.V4); got != a.IPv4 {
		t.Errorf("recorded IPv4 %s, want %s", got, a.IPv4)
	}
	if got := fromBPFAddr(local.V6); got != a.IPv6 {
		t.Errorf("recorded IPv6 %s, want %s", got, a.IPv6)
	}
	if err := g.r.Detach("test/a"); err != nil {
		t.Fatal(err)
	}
	for at, n := range cgroupPrograms(t, a.CgroupDir, sockNameHooks...) {
		if n != 0 {
			t.Errorf("%v: %d programs still attached after Detach", at, n)
		}
	}
	if err := g.r.maps.PodsLocal.Lookup(&att.NetnsCookie, &local); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("pod addresses after Detach: %v, want ErrKeyNotExist", err)
	}
}

// Shown: on a kernel without the getpeername/getsockname hooks (simulated by not
// loading those programs) capture works as before; apps see the listener as
// their peer, and nothing is attached to those hooks.
func TestCaptureWithoutTransparency(t *testing.T) {
	g := newRig(t, func(c *Config) { c.withoutTransparency = true })
	if g.r.Transparent() {
		t.Fatal("Transparent() = true without the programs")
	}
	a, b := g.pod(t, "a"), g.pod(t, "b")
	att := g.attach(t, a, nil)
	go serveOrigDst(att.Outbound, att.OutboundResolver(), "proxy")
	target := hostPort(b.IPv4, 8080)
	rep := reportFrom(t, a, "dial,"+target)["dial,"+target]
	if rep.Err != "" || rep.Line != "proxy "+target {
		t.Fatalf("capture without transparency: %+v", rep)
	}
	if rep.Peer != "127.0.0.1:15001" {
		t.Errorf("getpeername = %s, want the listener 127.0.0.1:15001 (no hook to rewrite it)", rep.Peer)
	}
	for at, n := range cgroupPrograms(t, a.CgroupDir, sockNameHooks...) {
		if n != 0 {
			t.Errorf("%v: %d programs attached without transparency", at, n)
		}
	}
}

// Shown: Open unpins orig_by_cookie, which agents before the socket-local
// record pinned, and keeps the maps it uses.
func TestOpenUnpinsRetiredMaps(t *testing.T) {
	g := newRig(t)
	dir := g.r.mapsDir
	if err := g.r.Release(); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 8, ValueSize: 32, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	retired := filepath.Join(dir, "orig_by_cookie")
	if err := old.Pin(retired); err != nil {
		t.Fatal(err)
	}
	r, err := Open(Config{PinDir: g.pinDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if _, err := os.Stat(retired); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still pinned after Open: %v", retired, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "orig_by_port")); err != nil {
		t.Errorf("orig_by_port: %v", err)
	}
}
