package redirect

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/testenv"
	"github.com/hoptrace/hoptrace/nodebox"
)

// The test binary doubles as the programs run inside simulated pods: a client
// that connects and reports what it was told, and an agent that can be killed.
const (
	envClient  = "HOPTRACE_REDIRECT_TEST_CLIENT"
	envAgent   = "HOPTRACE_REDIRECT_TEST_AGENT"
	envTargets = "HOPTRACE_TEST_TARGETS"
	envAddrs   = "HOPTRACE_REDIRECT_TEST_ADDRS"
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv(envClient) == "1":
		os.Exit(clientMain(strings.Split(os.Getenv(envTargets), ",")))
	case os.Getenv(envAgent) != "":
		os.Exit(agentMain(os.Getenv(envAgent)))
	case os.Getenv(envFastEcho) != "":
		os.Exit(fastEchoMain(os.Getenv(envFastEcho)))
	case os.Getenv(envFastApp) != "":
		os.Exit(fastAppMain(os.Getenv(envFastApp)))
	case os.Getenv(envAddrs) != "":
		os.Exit(addrsMain(strings.Split(os.Getenv(envAddrs), ";")))
	}
	os.Exit(m.Run())
}

// clientMain connects to every target at once and prints "target<TAB>first line".
func clientMain(targets []string) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := "error: "
			c, err := net.DialTimeout("tcp", t, 5*time.Second)
			if err == nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				var l string
				l, err = bufio.NewReader(c).ReadString('\n')
				c.Close()
				line = strings.TrimSuffix(l, "\n")
			}
			if err != nil {
				line += err.Error()
			}
			mu.Lock()
			fmt.Fprintf(out, "%s\t%s\n", t, line)
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.Flush()
	return 0
}

// agentMain attaches one pod ("id|cgroup|netns|pindir"), serves its outbound
// listener like the proxy would, says "ready" and waits to be killed.
func agentMain(spec string) int {
	f := strings.Split(spec, "|")
	r, err := Open(Config{PinDir: f[3]})
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	a, err := r.Attach(Pod{ID: f[0], CgroupDir: f[1], NetnsPath: f[2]})
	if err != nil {
		fmt.Println("attach:", err)
		return 1
	}
	go serveOrigDst(a.Outbound, a.OutboundResolver(), "agent1")
	fmt.Println("ready")
	select {}
}

// serveOrigDst answers every connection with "<tag> <original destination>".
func serveOrigDst(ln net.Listener, res Resolver, tag string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			dst, err := res.OriginalDst(c)
			if err != nil {
				fmt.Fprintf(c, "%s error %v\n", tag, err)
				return
			}
			fmt.Fprintf(c, "%s %s\n", tag, dst)
		}()
	}
}

// serveTag answers every connection with a fixed line: a stand-in for an app.
func serveTag(ln net.Listener, tag string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s %s %s\n", tag, c.LocalAddr(), c.RemoteAddr())
		c.Close()
	}
}

type rig struct {
	node   *nodebox.Node
	r      *Redirector
	pinDir string
}

func newRig(t testing.TB, opts ...func(*Config)) *rig {
	t.Helper()
	testenv.RequirePrivileged(t)
	pin := testenv.TempBPFFS(t)
	node, err := nodebox.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("close node: %v", err)
		}
	})
	cfg := Config{PinDir: pin}
	for _, o := range opts {
		o(&cfg)
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close redirector: %v", err)
		}
		if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
			entries, _ := os.ReadDir(pin)
			t.Errorf("pin dir %s left behind: %v", pin, entries)
		}
	})
	return &rig{node: node, r: r, pinDir: pin}
}

func (g *rig) pod(t *testing.T, name string) *nodebox.Pod {
	t.Helper()
	p, err := g.node.AddPod(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (g *rig) attach(t *testing.T, p *nodebox.Pod, mod func(*Pod)) *Attachment {
	t.Helper()
	pod := Pod{ID: "test/" + p.Name, CgroupDir: p.CgroupDir, NetnsPath: p.NetnsPath}
	if mod != nil {
		mod(&pod)
	}
	a, err := g.r.Attach(pod)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// connectFrom runs the client inside pod p (its cgroup and netns) and returns
// target → first line received.
func connectFrom(t *testing.T, p *nodebox.Pod, targets ...string) map[string]string {
	t.Helper()
	got, err := connectFromErr(p, targets)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(targets) {
		t.Fatalf("client in pod %s answered %d of %d targets: %v", p.Name, len(got), len(targets), got)
	}
	return got
}

// serveApp stands in for an app in pod p: a listener on each address answering
// with tag.
func serveApp(t *testing.T, p *nodebox.Pod, tag string, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		network := "tcp4"
		if strings.HasPrefix(addr, "[") {
			network = "tcp6"
		}
		ln, err := p.Listen(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveTag(ln, tag)
	}
}
