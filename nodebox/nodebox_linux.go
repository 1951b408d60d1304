package nodebox

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/cgroup2"
)

// Node is a bridge in its own netns plus the pods plugged into it.
type Node struct {
	ID         string
	NetnsName  string // the namespace holding the bridge
	Subnet4    netip.Prefix
	Subnet6    netip.Prefix
	CgroupRoot string // parent cgroup of all pods

	mu      sync.Mutex
	pods    []*Pod
	cgroups []string // AddCgroup's
	next    int      // next host number in the subnets
}

// New creates an empty node. Call Close to remove it and everything in it,
// including when a test fails.
func New() (_ *Node, err error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("random node id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	cgRoot, err := cgroup2.Mountpoint()
	if err != nil {
		return nil, fmt.Errorf("nodebox: %w", err)
	}
	n := &Node{
		ID:         id,
		NetnsName:  "ht-" + id + "-node",
		Subnet4:    netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 199, b[0], 0}), 24),
		Subnet6:    netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x68, 0x74, 0x70, b[0], b[1], b[2], 0}), 64),
		CgroupRoot: filepath.Join(cgRoot, "hoptrace-nodebox-"+id),
		next:       2,
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if err := os.Mkdir(n.CgroupRoot, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	if err := ipCmd("netns", "add", n.NetnsName); err != nil {
		return nil, err
	}
	if err := ipBatch(n.NetnsName,
		"link set lo up",
		"link add br0 type bridge",
		"link set br0 up",
	); err != nil {
		return nil, err
	}
	return n, nil
}

// AddCgroup makes a cgroup named name below the node's, for a process of the
// node that is no pod's: the agent, which runs in a container's cgroup on a
// real node. Close kills what runs there and removes it.
func (n *Node) AddCgroup(name string) (string, error) {
	dir := filepath.Join(n.CgroupRoot, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("nodebox: cgroup %s: %w", name, err)
	}
	n.mu.Lock()
	n.cgroups = append(n.cgroups, dir)
	n.mu.Unlock()
	return dir, nil
}

// PodOption changes how AddPod builds a pod.
type PodOption func(*Pod)

// WithCgroup puts the pod's cgroup at rel below the node's cgroup root instead
// of at its name, e.g. "kubepods/besteffort/pod<uid>" to look like a kubelet's.
func WithCgroup(rel string) PodOption {
	return func(p *Pod) { p.CgroupDir = filepath.Join(p.node.CgroupRoot, rel) }
}

// AddPod creates a pod: netns, veth to the bridge, IPv4 and IPv6 addresses on
// the node's subnets, and a cgroup.
func (n *Node) AddPod(name string, opts ...PodOption) (_ *Pod, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.pods {
		if p.Name == name {
			return nil, fmt.Errorf("add pod %s: %w", name, ErrPodExists)
		}
	}
	host := n.next
	if host > 250 {
		return nil, fmt.Errorf("add pod %s: node subnet is full", name)
	}
	n.next++
	v4 := n.Subnet4.Addr().As4()
	v4[3] = byte(host)
	v6 := n.Subnet6.Addr().As16()
	v6[15] = byte(host)
	p := &Pod{
		Name:      name,
		NetnsName: "ht-" + n.ID + "-" + name,
		CgroupDir: filepath.Join(n.CgroupRoot, name),
		IPv4:      netip.AddrFrom4(v4),
		IPv6:      netip.AddrFrom16(v6),
		node:      n,
	}
	p.NetnsPath = filepath.Join("/run/netns", p.NetnsName)
	for _, o := range opts {
		o(p)
	}
	defer func() {
		if err != nil {
			p.remove()
		}
	}()
	if err := os.MkdirAll(p.CgroupDir, 0o755); err != nil {
		return nil, fmt.Errorf("add pod %s: create cgroup: %w", name, err)
	}
	if err := ipCmd("netns", "add", p.NetnsName); err != nil {
		return nil, fmt.Errorf("add pod %s: %w", name, err)
	}
	hostIf := fmt.Sprintf("v%s%d", n.ID, host) // <= 15 chars
	if err := ipBatch(n.NetnsName,
		fmt.Sprintf("link add %s type veth peer name eth0 netns %s", hostIf, p.NetnsName),
		fmt.Sprintf("link set %s master br0", hostIf),
		fmt.Sprintf("link set %s up", hostIf),
	); err != nil {
		return nil, fmt.Errorf("add pod %s: %w", name, err)
	}
	// Addresses only: the kernel adds the on-link route to the node subnet and no
	// other route exists, so the pod reaches its neighbours and nothing else.
	if err := ipBatch(p.NetnsName,
		"link set lo up",
		fmt.Sprintf("addr add %s/%d dev eth0", p.IPv4, n.Subnet4.Bits()),
		fmt.Sprintf("addr add %s/%d dev eth0 nodad", p.IPv6, n.Subnet6.Bits()),
		"link set eth0 up",
	); err != nil {
		return nil, fmt.Errorf("add pod %s: %w", name, err)
	}
	n.pods = append(n.pods, p)
	return p, nil
}

// Pods returns the node's pods in creation order.
func (n *Node) Pods() []*Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Pod(nil), n.pods...)
}

// RemovePod kills the pod's processes and removes its netns and cgroup.
func (n *Node) RemovePod(name string) error {
	n.mu.Lock()
	var p *Pod
	for i, x := range n.pods {
		if x.Name == name {
			p = x
			n.pods = append(n.pods[:i], n.pods[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("remove pod %s: not found", name)
	}
	return p.remove()
}

// Close removes every pod, the bridge namespace and the cgroups. It is safe to
// call on a half-built node and more than once.
func (n *Node) Close() error {
	n.mu.Lock()
	pods := n.pods
	n.pods = nil
	cgroups := n.cgroups
	n.cgroups = nil
	n.mu.Unlock()
	var errs []error
	for _, p := range pods {
		errs = append(errs, p.remove())
	}
	for _, dir := range cgroups {
		errs = append(errs, killCgroup(dir), removeCgroup(dir))
	}
	if _, err := os.Stat(filepath.Join("/run/netns", n.NetnsName)); err == nil {
		errs = append(errs, ipCmd("netns", "del", n.NetnsName))
	}
	errs = append(errs, removeCgroup(n.CgroupRoot))
	return errors.Join(errs...)
}

// removeCgroup removes a cgroup dir. The kernel may still be tearing down a
// just-killed process when cgroup.procs is already empty, so EBUSY is retried.
func removeCgroup(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *Pod) remove() error {
	var errs []error
	errs = append(errs, killCgroup(p.CgroupDir), removeCgroup(p.CgroupDir))
	// Remove the empty parents WithCgroup made, up to the node's root.
	for dir := filepath.Dir(p.CgroupDir); strings.HasPrefix(dir, p.node.CgroupRoot+"/"); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	if _, err := os.Stat(p.NetnsPath); err == nil {
		errs = append(errs, ipCmd("netns", "del", p.NetnsName))
	}
	return errors.Join(errs...)
}

// killCgroup kills every process in a cgroup and waits until it is empty.
func killCgroup(dir string) error {
	procs := filepath.Join(dir, "cgroup.procs")
	if _, err := os.Stat(procs); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		// cgroup.kill is Linux 5.14+; kill one by one otherwise.
		for _, pid := range cgroupPIDs(procs) {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(cgroupPIDs(procs)) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes still running after kill", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func cgroupPIDs(procs string) []int {
	b, err := os.ReadFile(procs)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ipBatch runs several ip commands in one netns with one process.
func ipBatch(netns string, cmds ...string) error {
	c := exec.Command("ip", "-n", netns, "-batch", "-")
	c.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s: %w: %s", netns, err, bytes.TrimSpace(out))
	}
	return nil
}
