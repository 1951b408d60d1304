package redirect

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/bench"
	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
)

// envFastApp makes the test binary an app in a pod that runs one scripted
// exchange over an in-pod leg: "client|<target>|<sizes>|<end>" connects (and is
// redirected to the outbound listener) and waits for the agent's greeting "hi"
// before it sends, "server|<addr>|<sizes>|<end>" serves one connection (the
// proxy's passthrough dial). It prints "ok" or what went wrong.
const envFastApp = "HOPTRACE_REDIRECT_TEST_FASTAPP"

// pattern is round r's bytes: different for every round and offset, so a lost,
// doubled or overtaken chunk shows.
func pattern(r, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + r*13 + i>>9)
	}
	return b
}

func parseSizes(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

func fastAppMain(spec string) int {
	f := strings.Split(spec, "|")
	if err := fastApp(f[0], f[1], parseSizes(f[2]), f[3]); err != nil {
		fmt.Println("error:", err)
		return 0
	}
	fmt.Println("ok")
	return 0
}

func fastApp(mode, addr string, sizes []int, end string) error {
	var c *net.TCPConn
	if mode == "client" {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		c = conn.(*net.TCPConn)
		// The agent's end joins the fast path before it greets: from here on, the
		// app's sends can take it.
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if err := expect(c, []byte("hi"), -1); err != nil {
			return err
		}
	} else {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		fmt.Println("listening")
		conn, err := ln.Accept()
		ln.Close()
		if err != nil {
			return err
		}
		c = conn.(*net.TCPConn)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	for r, n := range sizes {
		if mode == "client" {
			// The app sends a request and reads the agent's echo.
			if _, err := c.Write(pattern(r, n)); err != nil {
				return fmt.Errorf("round %d: write: %w", r, err)
			}
			if err := expect(c, pattern(r, n), r); err != nil {
				return err
			}
		} else {
			// The proxy sends a request of n bytes, the app answers with n bytes.
			if err := expect(c, pattern(r, n), r); err != nil {
				return err
			}
			if _, err := c.Write(pattern(r+100, n)); err != nil {
				return fmt.Errorf("round %d: write: %w", r, err)
			}
		}
	}
	switch end {
	case "order":
		// Two chunks, each when the agent says so ("1", "2"); the agent reads
		// neither before both are sent.
		for i, sig := range []string{"1", "2"} {
			if err := expect(c, []byte(sig), 10+i); err != nil {
				return err
			}
			if _, err := c.Write(pattern(10+i, 1000)); err != nil {
				return err
			}
			fmt.Println("sent", sig)
		}
		return expect(c, []byte("done"), 12)
	case "halfclose":
		if mode == "client" {
			if err := c.CloseWrite(); err != nil {
				return err
			}
			rest, err := io.ReadAll(c)
			if err != nil || string(rest) != "bye" {
				return fmt.Errorf("after half-close: %q, %v", rest, err)
			}
			return nil
		}
		rest, err := io.ReadAll(c)
		if err != nil || len(rest) != 0 {
			return fmt.Errorf("want EOF: %q, %v", rest, err)
		}
		_, err = c.Write([]byte("bye"))
		return err
	case "reset":
		c.SetLinger(0)
		return c.Close()
	case "peerclose":
		// The agent closed its end: sending goes on failing as with TCP, never hangs.
		for i := 0; i < 200; i++ {
			if _, err := c.Write(pattern(i, 1024)); err != nil {
				if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
					return nil
				}
				return fmt.Errorf("write after peer closed: %w", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return errors.New("writes to a closed peer kept succeeding")
	}
	return nil
}

func expect(c net.Conn, want []byte, r int) error {
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("round %d: read: %w", r, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("round %d: %d bytes differ from what was sent", r, len(want))
	}
	return nil
}

// fastAppProc is an app started in a pod: its output lines, and its end.
type fastAppProc struct {
	cmd    *exec.Cmd
	lines  *bufio.Scanner
	stderr *strings.Builder
}

// startFastApp runs the app in pod p (a server has said "listening" when it
// returns).
func startFastApp(t *testing.T, p *nodebox.Pod, spec string) *fastAppProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envFastApp+"="+spec)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	app := &fastAppProc{cmd: cmd, lines: bufio.NewScanner(out), stderr: &strings.Builder{}}
	cmd.Stderr = app.stderr
	if err := p.Start(cmd); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	if strings.HasPrefix(spec, "server|") {
		if line := app.next(); line != "listening" {
			t.Fatalf("app in %s did not start: %q %s", p.Name, line, app.stderr.String())
		}
	}
	return app
}

// next is the app's next output line ("" at its end).
func (a *fastAppProc) next() string {
	if !a.lines.Scan() {
		return ""
	}
	return a.lines.Text()
}

// wait returns the rest of the app's output once it has exited: "ok", or what
// went wrong.
func (a *fastAppProc) wait() string {
	var all []string
	for a.lines.Scan() {
		all = append(all, a.lines.Text())
	}
	a.cmd.Wait()
	if a.stderr.Len() > 0 {
		all = append(all, a.stderr.String())
	}
	return strings.Join(all, "\n")
}

func withFastPath(c *Config) { c.FastPath = true }

func fastCounters(t testing.TB, r *Redirector) FastPathCounters {
	t.Helper()
	c, err := r.FastPathCounters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// peek looks at the next byte the way the proxy does (proxy/peek_linux.go:
// recvfrom with MSG_PEEK, waiting for readiness in between), and must not
// consume it.
func peek(t *testing.T, c net.Conn) byte {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return perr != syscall.EAGAIN
	})
	if err != nil || perr != nil || n != 1 {
		t.Fatalf("peek: n=%d %v %v", n, err, perr)
	}
	return b[0]
}

func readExact(t *testing.T, c net.Conn, want []byte, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := peek(t, c); got != want[0] {
		t.Fatalf("%s: peeked %#x, want %#x", what, got, want[0])
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes arrived, not the ones sent", what, len(want))
	}
}

func acceptOne(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		if _, err := r.c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		return r.c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the outbound listener")
	}
	return nil
}

// Shown: on the outbound leg, an app's sends reach the agent's accepted socket
// through sk_msg — small writes each as one redirect of exactly their size, large
// ones intact — the proxy's MSG_PEEK sees them, the agent's answers (plain TCP)
// reach the app, and a half-close passes after redirected bytes.
func TestFastPathOutboundLeg(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { testFastPathOutboundLeg(t, false) })
	t.Run("ipv6", func(t *testing.T) { testFastPathOutboundLeg(t, true) })
}

func testFastPathOutboundLeg(t *testing.T, v6 bool) {
	g := newRig(t, withFastPath)
	a, b := g.pod(t, "a"), g.pod(t, "b")
	att := g.attach(t, a, nil)
	before := fastCounters(t, g.r)

	sizes := []int{1, 100, 4096, 65536, 1 << 20, 7}
	dst := b.IPv4
	if v6 {
		dst = b.IPv6
	}
	app := startFastApp(t, a, fmt.Sprintf("client|%s|%s|halfclose", hostPort(dst, 80), joinSizes(sizes)))
	// Snapshot before the greeting or echo that lets the app send the next round.
	prev := fastCounters(t, g.r)
	// Each family's listener served on its own, as the agent does: it adds
	// the accepted socket to the fast path as the merged one does.
	lns := att.OutboundListeners()
	if len(lns) != 2 {
		t.Fatalf("%d outbound listeners, want IPv4 and IPv6", len(lns))
	}
	ln := lns[0]
	if v6 {
		ln = lns[1]
	}
	c := acceptOne(t, ln)
	for r, n := range sizes {
		readExact(t, c, pattern(r, n), fmt.Sprintf("round %d (%d bytes)", r, n))
		now := fastCounters(t, g.r)
		if n <= 4096 {
			if d := now.Redirected - prev.Redirected; d != 1 {
				t.Errorf("round %d (%d bytes): %d redirects, want 1 (%+v)", r, n, d, now)
			}
		}
		if n <= 65536 {
			if d := now.RedirectedBytes - prev.RedirectedBytes; d != uint64(n) {
				t.Errorf("round %d: %d bytes redirected, want %d", r, d, n)
			}
		}
		prev = fastCounters(t, g.r)
		if _, err := c.Write(pattern(r, n)); err != nil {
			t.Fatal(err)
		}
	}
	// The app's half-close: EOF after everything it sent.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after the app's half-close: %q, %v; want EOF", rest, err)
	}
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := app.wait(); got != "ok" {
		t.Fatalf("app: %s", got)
	}
	after := fastCounters(t, g.r)
	if d := after.AppSockets - before.AppSockets; d != 1 {
		t.Errorf("%d app sockets entered the fast path, want 1", d)
	}
	if after.PeerErrors != 0 || after.AppSocketsFailed != 0 {
		t.Errorf("errors: %+v", after)
	}
	t.Logf("counters: %+v", after)
}

func joinSizes(sizes []int) string {
	s := make([]string, len(sizes))
	for i, n := range sizes {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// Shown: on the inbound leg, the proxy's passthrough dial to the app (from
// 127.0.0.6) enters the fast path, and the app's answers reach it redirected
// and intact; the proxy's half-close reaches the app.
func TestFastPathInboundLeg(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { testFastPathInboundLeg(t, false) })
	t.Run("ipv6", func(t *testing.T) { testFastPathInboundLeg(t, true) })
}

func testFastPathInboundLeg(t *testing.T, v6 bool) {
	g := newRig(t, withFastPath)
	b := g.pod(t, "b")
	att := g.attach(t, b, nil)

	sizes := []int{1, 100, 4096, 65536, 1 << 20, 7}
	target := hostPort(b.IPv4, 8080)
	if v6 {
		// The proxy dials the app from the pod's own IPv6 address.
		target = hostPort(b.IPv6, 8080)
	}
	app := startFastApp(t, b, fmt.Sprintf("server|%s|%s|halfclose", target, joinSizes(sizes)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := att.InboundDialer().DialContext(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for r, n := range sizes {
		prev := fastCounters(t, g.r)
		if _, err := c.Write(pattern(r, n)); err != nil {
			t.Fatal(err)
		}
		readExact(t, c, pattern(r+100, n), fmt.Sprintf("answer %d (%d bytes)", r, n))
		now := fastCounters(t, g.r)
		if n <= 4096 {
			if d := now.Redirected - prev.Redirected; d != 1 {
				t.Errorf("answer %d (%d bytes): %d redirects, want 1 (%+v)", r, n, d, now)
			}
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(c); err != nil || string(rest) != "bye" {
		t.Fatalf("after half-close: %q, %v; want bye and EOF", rest, err)
	}
	if got := app.wait(); got != "ok" {
		t.Fatalf("app: %s", got)
	}
}

// Shown: an app that resets its connection after redirected sends reaches the
// agent as a reset, as over TCP.
func TestFastPathReset(t *testing.T) {
	g := newRig(t, withFastPath)
	a, b := g.pod(t, "a"), g.pod(t, "b")
	att := g.attach(t, a, nil)
	sizes := []int{10, 10}
	app := startFastApp(t, a, fmt.Sprintf("client|%s|%s|reset", hostPort(b.IPv4, 80), joinSizes(sizes)))
	c := acceptOne(t, att.Outbound)
	for r, n := range sizes {
		readExact(t, c, pattern(r, n), fmt.Sprintf("round %d", r))
		c.Write(pattern(r, n))
	}
	if got := app.wait(); got != "ok" {
		t.Fatalf("app: %s", got)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the app's reset: %v, want ECONNRESET", err)
	}
	if fastCounters(t, g.r).Redirected == 0 {
		t.Error("nothing was redirected before the reset")
	}
}

// Shown: when the agent's socket leaves the fast path mid-connection, the app's
// next sends go over TCP, in order after the redirected ones; when it closes,
// the app's sends fail as over TCP instead of vanishing.
func TestFastPathPeerLeaves(t *testing.T) {
	g := newRig(t, withFastPath)
	a, b := g.pod(t, "a"), g.pod(t, "b")
	att := g.attach(t, a, nil)

	t.Run("leaves the map", func(t *testing.T) {
		sizes := []int{50, 50, 50, 50}
		app := startFastApp(t, a, fmt.Sprintf("client|%s|%s|none", hostPort(b.IPv4, 80), joinSizes(sizes)))
		c := acceptOne(t, att.Outbound)
		var left FastPathCounters
		for r, n := range sizes {
			readExact(t, c, pattern(r, n), fmt.Sprintf("round %d", r))
			switch {
			case r == 1:
				if fastCounters(t, g.r).Redirected == 0 {
					t.Fatal("nothing redirected before the agent's socket left")
				}
				key, _ := fastKey(att.NetnsCookie, c.LocalAddr(), c.RemoteAddr())
				if err := g.r.fast.maps.FastPeers.Delete(&key); err != nil {
					t.Fatalf("remove the agent's socket: %v", err)
				}
				left = fastCounters(t, g.r)
			case r > 1:
				now := fastCounters(t, g.r)
				if now.Redirected != left.Redirected || now.PassNoPeer+now.PassTCPBefore <= left.PassNoPeer+left.PassTCPBefore {
					t.Errorf("round %d: want TCP sends, counters went from %+v to %+v", r, left, now)
				}
			}
			c.Write(pattern(r, n))
		}
		if got := app.wait(); got != "ok" {
			t.Fatalf("app: %s", got)
		}
	})

	t.Run("closes", func(t *testing.T) {
		sizes := []int{50, 50}
		app := startFastApp(t, a, fmt.Sprintf("client|%s|%s|peerclose", hostPort(b.IPv4, 80), joinSizes(sizes)))
		c := acceptOne(t, att.Outbound)
		for r, n := range sizes {
			readExact(t, c, pattern(r, n), fmt.Sprintf("round %d", r))
			c.Write(pattern(r, n))
		}
		c.Close()
		if got := app.wait(); got != "ok" {
			t.Fatalf("app: %s", got)
		}
	})
}

// Shown: with the fast path off, or its sk_msg program detached, the same
// exchange works over plain TCP, and nothing is redirected.
func TestFastPathOffAndDetached(t *testing.T) {
	exchange := func(t *testing.T, g *rig, name string) {
		a, b := g.pod(t, name), g.pod(t, name+"-dst")
		att := g.attach(t, a, nil)
		sizes := []int{1, 4096, 1 << 20, 7}
		app := startFastApp(t, a, fmt.Sprintf("client|%s|%s|halfclose", hostPort(b.IPv4, 80), joinSizes(sizes)))
		c := acceptOne(t, att.Outbound)
		for r, n := range sizes {
			readExact(t, c, pattern(r, n), fmt.Sprintf("round %d", r))
			c.Write(pattern(r, n))
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("want EOF: %q, %v", rest, err)
		}
		c.Write([]byte("bye"))
		c.Close()
		if got := app.wait(); got != "ok" {
			t.Fatalf("app: %s", got)
		}
	}
	t.Run("off", func(t *testing.T) {
		g := newRig(t)
		exchange(t, g, "off")
		if _, err := g.r.FastPathCounters(); !errors.Is(err, ErrFastPathOff) {
			t.Errorf("counters with the fast path off: %v, want ErrFastPathOff", err)
		}
		if _, err := os.Stat(g.pinDir + "/maps/fast_apps"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("fast path map pinned although off: %v", err)
		}
	})
	t.Run("detached", func(t *testing.T) {
		g := newRig(t, withFastPath)
		err := link.RawDetachProgram(link.RawDetachProgramOptions{
			Target: g.r.fast.maps.FastApps.FD(), Program: g.r.fast.progs.Msg, Attach: ebpf.AttachSkMsgVerdict,
		})
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, g, "det")
		c := fastCounters(t, g.r)
		if c.Redirected != 0 || c.PassNoPeer != 0 {
			t.Errorf("sk_msg ran although detached: %+v", c)
		}
		if c.AppSockets == 0 {
			t.Errorf("the app's socket did not enter the map: %+v", c)
		}
	})
}

// Shown: the fast path's pins come and go with the Redirector, and an agent
// started without it removes those an earlier one left.
func TestFastPathPins(t *testing.T) {
	g := newRig(t, withFastPath)
	p := g.pod(t, "a")
	g.attach(t, p, nil)
	for _, name := range fastMaps {
		if _, err := os.Stat(g.pinDir + "/maps/" + name); err != nil {
			t.Errorf("map %s not pinned: %v", name, err)
		}
	}
	if err := g.r.FastPath(); err != nil {
		t.Fatalf("fast path: %v", err)
	}
	got := cgroupPrograms(t, p.CgroupDir, ebpf.AttachCGroupSockOps)
	if got[ebpf.AttachCGroupSockOps] != 2 {
		t.Errorf("sockops programs on the pod's cgroup: %d, want 2 (capture and fast path)", got[ebpf.AttachCGroupSockOps])
	}
}

// Shown: once an app has sent bytes over TCP (here while the agent's end was out
// of the fast path), its later sends stay on TCP even after the agent's end is
// back: redirected, they would land on a queue the agent reads first and overtake
// the TCP bytes it has not read yet.
func TestFastPathKeepsOrder(t *testing.T) {
	g := newRig(t, withFastPath)
	a, b := g.pod(t, "a"), g.pod(t, "b")
	att := g.attach(t, a, nil)
	app := startFastApp(t, a, fmt.Sprintf("client|%s|0|order", hostPort(b.IPv4, 80)))
	c := acceptOne(t, att.Outbound)
	key, _ := fastKey(att.NetnsCookie, c.LocalAddr(), c.RemoteAddr())
	if err := g.r.fast.maps.FastPeers.Delete(&key); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("1"))
	// Chunk 1 goes over TCP; wait until it sits unread in the agent's TCP queue.
	rc, _ := c.(syscall.Conn).SyscallConn()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var inq int
		rc.Control(func(fd uintptr) { inq, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if inq == 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chunk 1 not queued: %d bytes", inq)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := g.r.fast.maps.FastPeers.Update(&key, uint64(connFD(t, c)), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	before := fastCounters(t, g.r)
	c.Write([]byte("2"))
	for _, want := range []string{"sent 1", "sent 2"} {
		if line := app.next(); line != want {
			t.Fatalf("app: %q, want %q", line, want)
		}
	}
	// Chunk 2 is sent and chunk 1 still unread: both, in the order sent.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 2000)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:1000], pattern(10, 1000)) || !bytes.Equal(got[1000:], pattern(11, 1000)) {
		t.Fatal("the chunks arrived out of order or changed")
	}
	after := fastCounters(t, g.r)
	if after.Redirected != before.Redirected || after.PassTCPBefore == before.PassTCPBefore {
		t.Errorf("chunk 2: want a TCP send because chunk 1 went over TCP; counters %+v then %+v", before, after)
	}
	c.Write([]byte("done"))
	if got := app.wait(); got != "ok" {
		t.Fatalf("app: %s", got)
	}
}

func connFD(t *testing.T, c net.Conn) int {
	t.Helper()
	var fd int
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// envFastEcho makes the test binary a request/response app in a pod:
// "<addr>|<request size>|<response size>" serves one connection at a time,
// answering each request with a response, until the connection ends.
const envFastEcho = "HOPTRACE_REDIRECT_TEST_FASTECHO"

func fastEchoMain(spec string) int {
	f := strings.Split(spec, "|")
	req, _ := strconv.Atoi(f[1])
	resp, _ := strconv.Atoi(f[2])
	ln, err := net.Listen("tcp", f[0])
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("listening")
	in, out := make([]byte, req), pattern(1, resp)
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		for {
			if _, err := io.ReadFull(c, in); err != nil {
				break
			}
			if _, err := c.Write(out); err != nil {
				break
			}
		}
		c.Close()
	}
}

// BenchmarkFastPathInPodLeg is one request/response on the inbound leg's
// in-pod connection (the proxy's passthrough dial to the app): the request
// goes over loopback TCP, the app's response straight to the proxy's socket
// with the fast path on, over loopback TCP with it off.
func BenchmarkFastPathInPodLeg(b *testing.B) {
	for _, fast := range []bool{false, true} {
		for _, resp := range []int{64, 16 << 10} {
			name := fmt.Sprintf("fastpath=%v/response=%d", fast, resp)
			b.Run(name, func(b *testing.B) {
				var opts []func(*Config)
				if fast {
					opts = append(opts, withFastPath)
				}
				g := newRig(b, opts...)
				p, err := g.node.AddPod("app")
				if err != nil {
					b.Fatal(err)
				}
				att, err := g.r.Attach(Pod{ID: "bench/app", CgroupDir: p.CgroupDir, NetnsPath: p.NetnsPath})
				if err != nil {
					b.Fatal(err)
				}
				target := hostPort(p.IPv4, 8080)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$", "-test.bench=^$")
				cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d", envFastEcho, target, 100, resp))
				out, _ := cmd.StdoutPipe()
				if err := p.Start(cmd); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { cancel(); cmd.Wait() })
				if line, _ := bufio.NewReader(out).ReadString('\n'); line != "listening\n" {
					b.Fatalf("app: %q", line)
				}
				c, err := att.InboundDialer().DialContext(ctx, "tcp", target)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				req, got := pattern(0, 100), make([]byte, resp)
				b.SetBytes(int64(100 + resp))
				cpu0 := cpuSeconds(b, os.Getpid()) + cpuSeconds(b, cmd.Process.Pid)
				b.ResetTimer()
				for range b.N {
					if _, err := c.Write(req); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, got); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				// Both ends' CPU, user and kernel: what the fast path saves is
				// kernel work, which wall time on a loaded machine hides.
				cpu := cpuSeconds(b, os.Getpid()) + cpuSeconds(b, cmd.Process.Pid) - cpu0
				b.ReportMetric(cpu*1e9/float64(b.N), "cpu-ns/op")
				if fast {
					if n := fastCounters(b, g.r); n.Redirected < uint64(b.N) {
						b.Fatalf("only %d of %d responses redirected", n.Redirected, b.N)
					}
				}
			})
		}
	}
}

// Shown: a restarted agent with the fast path adopts its pins (the pod keeps one
// fast path sockops program, and the fast path works); one restarted without it
// removes the fast path's maps and the pod's link.
func TestFastPathRestart(t *testing.T) {
	testenv.RequirePrivileged(t)
	pin := testenv.TempBPFFS(t)
	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	a, err := node.AddPod("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := node.AddPod("b")
	if err != nil {
		t.Fatal(err)
	}
	pod := Pod{ID: "test/a", CgroupDir: a.CgroupDir, NetnsPath: a.NetnsPath}
	open := func(fast bool) *Redirector {
		r, err := Open(Config{PinDir: pin, FastPath: fast})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	sockops := func() int {
		return cgroupPrograms(t, a.CgroupDir, ebpf.AttachCGroupSockOps)[ebpf.AttachCGroupSockOps]
	}

	r1 := open(true)
	if _, err := r1.Attach(pod); err != nil {
		t.Fatal(err)
	}
	if err := r1.Release(); err != nil {
		t.Fatal(err)
	}
	r2 := open(true)
	att, err := r2.Attach(pod)
	if err != nil {
		t.Fatal(err)
	}
	if n := sockops(); n != 2 {
		t.Errorf("after a restart with the fast path: %d sockops programs on the pod, want 2", n)
	}
	app := startFastApp(t, a, fmt.Sprintf("client|%s|10,10|halfclose", hostPort(b.IPv4, 80)))
	c := acceptOne(t, att.Outbound)
	for r := range 2 {
		readExact(t, c, pattern(r, 10), fmt.Sprintf("round %d", r))
		c.Write(pattern(r, 10))
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.ReadAll(c)
	c.Write([]byte("bye"))
	c.Close()
	if got := app.wait(); got != "ok" {
		t.Fatalf("app: %s", got)
	}
	if n := fastCounters(t, r2).Redirected; n < 2 {
		t.Errorf("after a restart: %d sends redirected, want 2", n)
	}
	if err := r2.Release(); err != nil {
		t.Fatal(err)
	}

	r3 := open(false)
	t.Cleanup(func() {
		if err := r3.Close(); err != nil {
			t.Error(err)
		}
	})
	if _, err := r3.Attach(pod); err != nil {
		t.Fatal(err)
	}
	if n := sockops(); n != 1 {
		t.Errorf("after a restart without the fast path: %d sockops programs on the pod, want 1", n)
	}
	for _, name := range fastMaps {
		if _, err := os.Stat(pin + "/maps/" + name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("map %s still pinned: %v", name, err)
		}
	}
}

func cpuSeconds(tb testing.TB, pid int) float64 {
	s, err := bench.CPUSeconds(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Shown: an agent socket whose app has already sent bytes over TCP stays out
// of fast_peers (the app's sends would stay on TCP anyway) and is counted; one
// with nothing queued joins.
func TestFastPathLatePeer(t *testing.T) {
	g := newRig(t, withFastPath)
	att := g.attach(t, g.pod(t, "a"), nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inFastPeers := func(c net.Conn) bool {
		key, _ := fastKey(att.NetnsCookie, c.LocalAddr(), c.RemoteAddr())
		var v uint64
		return g.r.fast.maps.FastPeers.Lookup(&key, &v) == nil
	}
	for _, sendFirst := range []bool{false, true} {
		app, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer app.Close()
		agentEnd, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer agentEnd.Close()
		if sendFirst {
			app.Write([]byte("early"))
			deadline := time.Now().Add(5 * time.Second)
			for inq := 0; inq == 0 && time.Now().Before(deadline); {
				rc, _ := agentEnd.(syscall.Conn).SyscallConn()
				rc.Control(func(fd uintptr) { inq, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
			}
		}
		before := fastCounters(t, g.r)
		att.addPeer(agentEnd)
		after := fastCounters(t, g.r)
		if got := inFastPeers(agentEnd); got == sendFirst {
			t.Errorf("app sent first %v: agent socket in fast_peers %v", sendFirst, got)
		}
		if late := after.PeersLate - before.PeersLate; late != map[bool]uint64{false: 0, true: 1}[sendFirst] {
			t.Errorf("app sent first %v: %d late peers counted", sendFirst, late)
		}
		if after.PeerErrors != 0 {
			t.Errorf("peer errors: %+v", after)
		}
	}
}

// Shown: when the kernel refuses the fast path's programs, Open still succeeds,
// says why the fast path is off, pins nothing of it, and capture works.
func TestFastPathLoadFailureFailsOpen(t *testing.T) {
	g := newRig(t, func(c *Config) { c.FastPath, c.breakFastPath = true, true })
	err := g.r.FastPath()
	var ve *ebpf.VerifierError
	if !errors.Is(err, ErrFastPathOff) || !errors.As(err, &ve) {
		t.Fatalf("FastPath() = %v, want ErrFastPathOff wrapping the verifier's refusal", err)
	}
	for _, name := range fastMaps {
		if _, err := os.Stat(g.pinDir + "/maps/" + name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("map %s pinned although the fast path failed: %v", name, err)
		}
	}
	a, b := g.pod(t, "a"), g.pod(t, "b")
	att := g.attach(t, a, nil)
	go serveOrigDst(att.Outbound, att.OutboundResolver(), "proxy")
	target := hostPort(b.IPv4, 8080)
	if got := connectFrom(t, a, target)[target]; got != "proxy "+target {
		t.Fatalf("capture without the fast path: %q", got)
	}
	if n := cgroupPrograms(t, a.CgroupDir, ebpf.AttachCGroupSockOps)[ebpf.AttachCGroupSockOps]; n != 1 {
		t.Errorf("%d sockops programs on the pod, want 1 (capture only)", n)
	}
}
