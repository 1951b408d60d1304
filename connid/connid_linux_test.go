package connid

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
)

// ownCgroup moves this test process into a throw-away cgroup, as the agent
// runs in a container's, and opens a Table on it; both are undone at cleanup.
func ownCgroup(t testing.TB) *Table {
	t.Helper()
	dir := testenv.InOwnCgroup(t)
	tbl, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tbl.Close() }) // runs before the move back
	return tbl
}

// The two ends of one connection name it alike, also when NAT rewrote the
// destination on the way (a Service's virtual IP, here a DNAT in the client
// pod's netns); a connection whose client is another cgroup's shows only the
// server end as ours; sockets made before the table are unknown.
func TestIdentify(t *testing.T) {
	early, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	earlyConn, err := net.Dial("tcp", early.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer earlyConn.Close()

	tbl := ownCgroup(t)
	if _, _, ok := tbl.Identify(earlyConn); ok {
		t.Error("a connection made before Open was identified")
	}
	// This process's own netns (the agent's: the node's) is left out: its
	// admin API is no end of a hop.
	ownConn, err := net.Dial("tcp", early.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ownConn.Close()
	if _, _, ok := tbl.Identify(ownConn); ok {
		t.Error("a connection in the process's own netns was identified")
	}

	n, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	client, err := n.AddPod("client")
	if err != nil {
		t.Fatal(err)
	}
	server, err := n.AddPod("server")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := server.Listen("tcp4", netip.AddrPortFrom(server.IPv4, 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// An unused address of the pods' subnet stands for a Service's virtual IP.
	vip := netip.AddrFrom4([4]byte{server.IPv4.As4()[0], server.IPv4.As4()[1], server.IPv4.As4()[2], 251})
	if b, err := exec.Command("ip", "netns", "exec", client.NetnsName, "iptables", "-w", "-t", "nat", "-A", "OUTPUT",
		"-d", vip.String(), "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", server.IPv4.String()+":8080").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, dst := range []string{netip.AddrPortFrom(server.IPv4, 8080).String(), vip.String() + ":80"} {
		t.Run(dst, func(t *testing.T) {
			dialed, err := client.Dial(ctx, "tcp4", dst)
			if err != nil {
				t.Fatal(err)
			}
			defer dialed.Close()
			accepted, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer accepted.Close()
			if dialed.RemoteAddr().String() != dst {
				t.Fatalf("dialed %s, connected to %s", dst, dialed.RemoteAddr())
			}
			idD, oursD, okD := tbl.Identify(dialed)
			idA, oursA, okA := tbl.Identify(accepted)
			if !okD || !okA {
				t.Fatalf("identified: dialer %v, acceptor %v; want both", okD, okA)
			}
			if idD != idA {
				t.Errorf("dialer's end names the connection %+v, acceptor's %+v", idD, idA)
			}
			if want := (Ends{Client: true, Server: true}); oursD != want || oursA != want {
				t.Errorf("ours: dialer %+v, acceptor %+v; want %+v", oursD, oursA, want)
			}
		})
	}

	// Another connection names itself differently.
	t.Run("distinct", func(t *testing.T) {
		ids := map[ID]bool{}
		for range 20 {
			c, err := client.Dial(ctx, "tcp4", vip.String()+":80")
			if err != nil {
				t.Fatal(err)
			}
			a, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			id, _, _ := tbl.Identify(c)
			ids[id] = true
			c.Close()
			a.Close()
		}
		if len(ids) != 20 {
			t.Errorf("20 connections, %d identities", len(ids))
		}
	})

	// Inside one pod, over loopback (the app's connection to the agent's
	// listener, the inbound proxy's to the app): never a hop, not recorded.
	t.Run("loopback", func(t *testing.T) {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			lo, err := client.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer lo.Close()
			c, err := client.Dial(ctx, "tcp", lo.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			a, err := lo.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if _, _, ok := tbl.Identify(c); ok {
				t.Errorf("%s: the dialer's end was identified", lo.Addr())
			}
			if _, _, ok := tbl.Identify(a); ok {
				t.Errorf("%s: the acceptor's end was identified", lo.Addr())
			}
		}
	})

	// A client in another cgroup (the pod's, as an app's connection is).
	t.Run("foreign client", func(t *testing.T) {
		cmd := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/8080; sleep 5", server.IPv4))
		if err := client.Start(cmd); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		accepted, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer accepted.Close()
		_, ours, ok := tbl.Identify(accepted)
		if !ok || ours != (Ends{Server: true}) {
			t.Errorf("ours %+v (%v), want only the server end", ours, ok)
		}
	})
}

// What a hand-off pays per side of a new connection that is not announced: one
// look-up of the socket's record and one of the connection's ends.
func BenchmarkIdentify(b *testing.B) {
	tbl := ownCgroup(b)
	n, err := nodebox.New()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	pod, err := n.AddPod("p")
	if err != nil {
		b.Fatal(err)
	}
	ln, err := pod.Listen("tcp", netip.AddrPortFrom(pod.IPv4, 0).String()) // loopback is not recorded
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := pod.Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, _, ok := tbl.Identify(c); !ok {
		b.Fatal("not identified")
	}
	b.ReportAllocs()
	for b.Loop() {
		tbl.Identify(c)
	}
}
