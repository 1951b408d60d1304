package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/nodebox"
)

// proc is a helper process the benchmark started: a server, a proxy, the
// agent. Its output goes to a log file in the work dir.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // after exited is closed
}

// startProc starts cmd, in pod (cgroup and netns) when pod is not nil, with its
// output in <workDir>/<name>.log. Children die with this process (Pdeathsig).
func startProc(workDir, name string, pod *nodebox.Pod, cmd *exec.Cmd) (*proc, error) {
	logPath := filepath.Join(workDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	cmd.Stderr = f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if pod != nil {
		err = pod.Start(cmd)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to grace before SIGKILL. Only this process
// is signalled, by its pid.
func (p *proc) stop(grace time.Duration) error {
	if p == nil || !p.alive() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.name, grace)
}

// tail returns the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1500 {
		s = "…" + s[len(s)-1500:]
	}
	return s
}

// startAndAwaitLine starts a process whose stdout announces readiness with a
// line starting with prefix, and returns that line. The rest of its stdout
// goes to its log.
func startAndAwaitLine(ctx context.Context, workDir, name string, pod *nodebox.Pod, cmd *exec.Cmd, prefix string, timeout time.Duration) (*proc, string, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stdout = pw
	p, err := startProc(workDir, name, pod, cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, "", err
	}
	lines := make(chan string, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			if !found && strings.HasPrefix(sc.Text(), prefix) {
				found = true
				lines <- sc.Text()
			}
		}
		if !found {
			close(lines)
		}
		// Scan stops at an over-long line; keep draining so the process never
		// blocks on a full pipe.
		io.Copy(io.Discard, pr)
	}()
	select {
	case line, ok := <-lines:
		if ok {
			return p, line, nil
		}
		err = errors.New("exited before it was ready")
	case <-time.After(timeout):
		err = fmt.Errorf("not ready after %s", timeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.stop(2 * time.Second)
	return nil, "", fmt.Errorf("%s: %w: %s", name, err, p.tail())
}

// waitDial waits until something accepts connections on addr, dialled from
// inside pod.
func waitDial(ctx context.Context, pod *nodebox.Pod, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := pod.Dial(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing accepts on %s in pod %s after %s: %w", addr, pod.Name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
