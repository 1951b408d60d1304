package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/nodebox"
)

// The local hand-off with the agent binary and real BPF: calls between two
// pods of the node go through memory once the kernel made the connection
// (hoptrace_local_handoffs_total counts them, and a silent veth shows it),
// and the kernel still decides on every new connection: a rule in the server
// pod's netns that rejects the client (what a CNI's network policy does) fails
// the call exactly as without the agent. --local-handoff=false turns it off.
func TestLocalHandoffE2E(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("local-handoff=%v", on), func(t *testing.T) {
			env := up(t, "http://127.0.0.1:1", fmt.Sprintf("--local-handoff=%v", on))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			client, server := env.Pods["client"], env.Pods["emoji"]

			serveBodies(t, server, false)
			url := fmt.Sprintf("http://%s:5080/", server.IPv4)
			curl := func() (string, error) { return postMB3(ctx, client, url) }
			// Policy first, while the agent holds no connection to the server
			// pod: its netns rejects the client pod.
			rule := []string{"-I", "INPUT", "-p", "tcp", "--dport", "5080", "-s", client.IPv4.String(), "-j", "REJECT", "--reject-with", "tcp-reset"}
			if b, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", server.NetnsName, "iptables", "-w"}, rule...)...).CombinedOutput(); err != nil {
				t.Fatalf("iptables: %v: %s", err, b)
			}
			if out, err := curl(); err == nil {
				t.Errorf("a call the server pod's netns rejects went through: %q", out)
			}
			if v := metricValue(adminMetrics(t, env.AdminSocket), `hoptrace_local_handoffs_total{result="matched"}`); v > 0 {
				t.Errorf("hand-offs matched %v for a rejected connection", v)
			}
			rule[0] = "-D"
			if b, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", server.NetnsName, "iptables", "-w"}, rule...)...).CombinedOutput(); err != nil {
				t.Fatalf("iptables: %v: %s", err, b)
			}

			veth := vethBytes(t, server)
			out, err := curl()
			if err != nil || out != "got 1048576got 1048576got 1048576" {
				t.Fatalf("curl: %v: %q", err, out)
			}
			moved := vethBytes(t, server) - veth
			m := adminMetrics(t, env.AdminSocket)
			matched := metricValue(m, `hoptrace_local_handoffs_total{result="matched"}`)
			if on {
				if matched != 1 || metricValue(m, `hoptrace_local_handoffs_total{result="missed"}`) != 0 {
					t.Errorf("hand-offs matched %v, missed %v; want 1 and 0", matched, metricValue(m, `hoptrace_local_handoffs_total{result="missed"}`))
				}
				// The handshake and the closing packets cross the veth, not 3 MB.
				if moved > 64<<10 {
					t.Errorf("%d bytes crossed the server pod's veth, want only the handshake's", moved)
				}
			} else {
				if matched != -1 {
					t.Errorf("hand-off counted %v with --local-handoff=false", matched)
				}
				if moved < 3<<20 {
					t.Errorf("%d bytes crossed the server pod's veth over TCP, want the 3 MB sent", moved)
				}
			}

		})
	}
}

// vethBytes is what the pod's eth0 (its end of the veth) received and sent so
// far, from /proc/net/dev as seen inside its netns.
func vethBytes(t *testing.T, p interface{ Run(*exec.Cmd) error }) int64 {
	t.Helper()
	cmd := exec.Command("cat", "/proc/net/dev")
	var out strings.Builder
	cmd.Stdout = &out
	if err := p.Run(cmd); err != nil {
		t.Fatalf("read /proc/net/dev: %v", err)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		name, stats, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "eth0" {
			continue
		}
		f := strings.Fields(stats)
		var rx, tx int64
		fmt.Sscan(f[0], &rx)
		fmt.Sscan(f[8], &tx)
		return rx + tx
	}
	t.Fatalf("no eth0 in %s", out.String())
	return 0
}

// Through a Service's virtual IP: the outbound proxy dials the virtual IP, a
// DNAT (kube-proxy's part, here in the client pod's netns) sends the
// connection to the server pod, and the inbound proxy sees the backend's
// address. The agent's connection identity (package connid, its program on
// the agent's own cgroup) pairs the two sides all the same: the bytes pass
// in memory, and the veth carries only the handshake.
func TestLocalHandoffThroughServiceE2E(t *testing.T) {
	env := up(t, "http://127.0.0.1:1", "--local-handoff=true")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, server := env.Pods["client"], env.Pods["emoji"]
	serveBodies(t, server, true)

	a := server.IPv4.As4()
	vip := netip.AddrFrom4([4]byte{a[0], a[1], a[2], 251}) // no pod has it
	if b, err := exec.CommandContext(ctx, "ip", "netns", "exec", client.NetnsName, "iptables", "-w", "-t", "nat", "-A", "OUTPUT",
		"-d", vip.String(), "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", server.IPv4.String()+":5080").CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v: %s", err, b)
	}
	url := "http://" + vip.String() + "/"
	veth := vethBytes(t, server)
	got, err := postMB3(ctx, client, url)
	if want := strings.Repeat("got 1048576 from "+vip.String(), 3); err != nil || got != want {
		t.Fatalf("curl: %v: %q, want %q", err, got, want)
	}
	moved := vethBytes(t, server) - veth
	// As a user would look, with no curl in the agent's image.
	b, err := exec.CommandContext(ctx, filepath.Join(binDir, "hoptrace"), "metrics", "--admin-socket", env.AdminSocket, "hoptrace_local_handoffs_total").CombinedOutput()
	if err != nil {
		t.Fatalf("hoptrace metrics: %v: %s", err, b)
	}
	m := string(b)
	for _, line := range strings.Split(strings.TrimSpace(m), "\n") {
		if !strings.HasPrefix(line, "hoptrace_local_handoffs_total{") {
			t.Errorf("hoptrace metrics hoptrace_local_handoffs_total printed %q", line)
		}
	}
	matched := metricValue(m, `hoptrace_local_handoffs_total{result="matched"}`)
	missed := metricValue(m, `hoptrace_local_handoffs_total{result="missed"}`)
	if matched != 1 || missed != 0 {
		t.Errorf("hand-offs matched %v, missed %v; want 1 and 0", matched, missed)
	}
	if moved > 64<<10 {
		t.Errorf("%d bytes crossed the server pod's veth, want only the handshake's", moved)
	}

	// Masqueraded, as kube-proxy does a pod's call to a Service it backs
	// itself: the server pod sees the call come from an address that is no
	// pod's. The identity pairs the two sides all the same.
	// Another virtual IP: the agent keeps its connection to the first pooled.
	a = server.IPv4.As4()
	vip2 := netip.AddrFrom4([4]byte{a[0], a[1], a[2], 250})
	masq := netip.AddrFrom4([4]byte{a[0], a[1], a[2], 252})
	for _, c := range [][]string{
		{"ip", "addr", "add", masq.String() + "/32", "dev", "eth0"},
		{"iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-d", vip2.String(), "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", server.IPv4.String() + ":5080"},
		{"iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-d", server.IPv4.String(), "-p", "tcp", "--dport", "5080", "-j", "SNAT", "--to-source", masq.String()},
	} {
		if b, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", client.NetnsName}, c...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, b)
		}
	}
	var out strings.Builder
	cmd := exec.CommandContext(ctx, "curl", "-s", "-f", "--max-time", "10", "http://"+vip2.String()+"/")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := client.Run(cmd); err != nil || out.String() != "got 0 from "+vip2.String() {
		t.Fatalf("masqueraded curl: %v: %q", err, out.String())
	}
	if b, err = exec.CommandContext(ctx, filepath.Join(binDir, "hoptrace"), "metrics", "--admin-socket", env.AdminSocket, "hoptrace_local_handoffs_total").CombinedOutput(); err != nil {
		t.Fatalf("hoptrace metrics: %v: %s", err, b)
	}
	matched = metricValue(string(b), `hoptrace_local_handoffs_total{result="matched"}`)
	missed = metricValue(string(b), `hoptrace_local_handoffs_total{result="missed"}`)
	if matched != 2 || missed != 0 {
		t.Errorf("masqueraded: hand-offs matched %v, missed %v in all; want 2 and 0", matched, missed)
	}
	// The server saw the masqueraded source: the check above is about that case.
	flows, err := exec.CommandContext(ctx, filepath.Join(binDir, "hoptrace"), "flows", "-o", "json", "--admin-socket", env.AdminSocket).Output()
	if err != nil {
		t.Fatalf("hoptrace flows: %v", err)
	}
	if !strings.Contains(string(flows), masq.String()) {
		t.Errorf("no flow from the masqueraded address %s: %s", masq, flows)
	}
}

// serveBodies serves HTTP on port 5080 of pod, answering each request with
// the length of its body ("got N"), and with withHost " from <Host>".
func serveBodies(t *testing.T, pod *nodebox.Pod, withHost bool) {
	t.Helper()
	ln, err := pod.Listen("tcp4", "0.0.0.0:5080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
		if withHost {
			fmt.Fprintf(w, " from %s", r.Host)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// postMB3 has curl in pod POST 1 MB to url three times on one connection, and
// returns what it printed.
func postMB3(ctx context.Context, pod *nodebox.Pod, url string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", "-c",
		`head -c 1048576 /dev/zero > /tmp/hoptrace-handoff-body.$$ && `+
			`curl -s -f --max-time 10 --data-binary @/tmp/hoptrace-handoff-body.$$ `+url+` `+url+` `+url+`; rc=$?; rm -f /tmp/hoptrace-handoff-body.$$; exit $rc`)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := pod.Run(cmd)
	return out.String(), err
}
