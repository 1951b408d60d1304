package nodebox

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/testenv"
)

func newNode(t *testing.T) *Node {
	t.Helper()
	testenv.RequirePrivileged(t)
	n, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	return n
}

func TestPodsReachEachOtherOnly(t *testing.T) {
	n := newNode(t)
	a, err := n.AddPod("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddPod("b")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, addr := range []netip.Addr{b.IPv4, b.IPv6} {
		ln, err := b.Listen("tcp", netip.AddrPortFrom(addr, 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("hello from b\n"))
				c.Close()
			}
		}()
		c, err := a.Dial(ctx, "tcp", netip.AddrPortFrom(addr, 8080).String())
		if err != nil {
			t.Fatalf("dial b at %s: %v", addr, err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		ln.Close()
		if line != "hello from b\n" {
			t.Fatalf("got %q", line)
		}
	}

	// No route out: an address outside the node subnet is unreachable at once.
	err = a.Do(func() error {
		_, err := net.DialTimeout("tcp", "192.0.2.1:80", time.Second)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("dial outside the node: %v, want network unreachable", err)
	}
}

func TestStartJoinsCgroupAndNetns(t *testing.T) {
	n := newNode(t)
	a, err := n.AddPod("a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", "cat /proc/self/cgroup; readlink /proc/self/ns/net")
	var out strings.Builder
	cmd.Stdout = &out
	if err := a.Run(cmd); err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(a.CgroupDir, filepath.Dir(n.CgroupRoot))
	if !strings.Contains(out.String(), "0::"+rel+"\n") {
		t.Errorf("child cgroup: %q, want 0::%s", out.String(), rel)
	}
	fi, err := os.Stat(a.NetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = fi
	self, _ := os.Readlink("/proc/self/ns/net")
	if strings.Contains(out.String(), self) {
		t.Errorf("child ran in the host netns %s", self)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	testenv.RequirePrivileged(t)
	n, err := New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := n.AddPod("a")
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "60")
	if err := p.Start(sleeper); err != nil {
		n.Close()
		t.Fatal(err)
	}
	go sleeper.Wait()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{p.NetnsPath, "/run/netns/" + n.NetnsName, p.CgroupDir, n.CgroupRoot} {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Close", path)
		}
	}
}
