package nodebox

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"

	"github.com/hoptrace/hoptrace/netns"
)

// Start starts cmd inside the pod: in its cgroup (so the pod's cgroup BPF programs
// see its sockets) and in its netns. The child is forked from a thread switched
// into the netns, and placed in the cgroup by clone3, so both hold from its first
// instruction.
func (p *Pod) Start(cmd *exec.Cmd) error {
	return p.Do(func() error {
		if err := StartInCgroup(p.CgroupDir, cmd); err != nil {
			return fmt.Errorf("pod %s: %w", p.Name, err)
		}
		return nil
	})
}

// StartInCgroup starts cmd in the cgroup dir (clone3 puts it there before its
// first instruction), dying with this process.
func StartInCgroup(dir string, cmd *exec.Cmd) error {
	cg, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	defer cg.Close()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(cg.Fd())
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return nil
}

// Run starts cmd in the pod and waits for it.
func (p *Pod) Run(cmd *exec.Cmd) error {
	if err := p.Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// Command is exec.CommandContext for a command to be started with Start or Run.
func (p *Pod) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

// Do runs fn on an OS thread switched into the pod's netns (not its cgroup: a
// thread cannot join a cgroup alone). Sockets fn opens stay in the pod's netns.
func (p *Pod) Do(fn func() error) error {
	if err := netns.DoPath(p.NetnsPath, fn); err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	return nil
}

// Listen opens a listener inside the pod's netns, as an app in the pod would.
func (p *Pod) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := p.Do(func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("pod %s: listen %s: %w", p.Name, address, err)
	}
	return ln, nil
}

// Dial connects from inside the pod's netns (but not its cgroup: the pod's
// outbound capture does not apply; use Start for that).
func (p *Pod) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := p.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}
