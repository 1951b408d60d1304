package jaegertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long Start waits for Jaeger to become ready.
const StartTimeout = 60 * time.Second

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// Jaeger is one Jaeger process on fixed loopback ports. It can be started late,
// killed and started again on the same ports, as collectors are in production.
type Jaeger struct {
	// Addresses, all on 127.0.0.1.
	OTLPGRPCAddr string // host:port of the OTLP/gRPC receiver
	OTLPHTTPURL  string // http://host:port of the OTLP/HTTP receiver (add /v1/traces)
	QueryURL     string // http://host:port of the query API and UI
	ZipkinURL    string // http://host:port of the Zipkin receiver
	Ports        Ports

	t       testing.TB
	bin     string
	dir     string // config and logs
	config  string
	metrics string // http://host:port/metrics of Jaeger's own telemetry
	client  *http.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	starts int
}

// New prepares a Jaeger on free loopback ports without starting it, for tests that
// need the collector's address before the collector exists. It registers a cleanup
// that stops the process (by its PID) and, if the test failed, logs the tail of
// Jaeger's log.
func New(t testing.TB) *Jaeger {
	t.Helper()
	bin := requireBinary(t)
	ports, err := freePorts()
	if err != nil {
		t.Fatalf("jaegertest: %v", err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(config, configYAML, 0o644); err != nil {
		t.Fatalf("jaegertest: write config: %v", err)
	}
	j := &Jaeger{
		OTLPGRPCAddr: hostPort(ports.OTLPGRPC),
		OTLPHTTPURL:  "http://" + hostPort(ports.OTLPHTTP),
		QueryURL:     "http://" + hostPort(ports.Query),
		ZipkinURL:    "http://" + hostPort(ports.Zipkin),
		Ports:        ports,
		t:            t,
		bin:          bin,
		dir:          dir,
		config:       config,
		metrics:      "http://" + hostPort(ports.Metrics) + "/metrics",
		client:       &http.Client{Timeout: 10 * time.Second},
	}
	t.Cleanup(func() {
		if err := j.Stop(); err != nil {
			t.Errorf("jaegertest: %v", err)
		}
		if t.Failed() {
			j.logTail(40)
		}
	})
	return j
}

// Start starts a Jaeger on free ports and waits until it is ready; the test fails
// if it cannot.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	j := New(t)
	if err := j.Start(); err != nil {
		t.Fatalf("jaegertest: %v", err)
	}
	return j
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Start starts the process (again, after Kill or Stop) and waits until its
// health check passes and the query API answers.
func (j *Jaeger) Start() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cmd != nil {
		return fmt.Errorf("jaeger already running (pid %d)", j.cmd.Process.Pid)
	}
	j.starts++
	logPath := filepath.Join(j.dir, fmt.Sprintf("jaeger-%d.log", j.starts))
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create jaeger log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(j.bin, "--config", j.config)
	cmd.Env = append(os.Environ(), j.Ports.env()...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start jaeger: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // reaps the child; an exit status of a killed Jaeger is expected
		close(exited)
	}()
	j.cmd, j.exited = cmd, exited

	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := j.waitReady(ctx, exited); err != nil {
		j.killLocked(syscall.SIGKILL, 0)
		return fmt.Errorf("jaeger on %s: %w; log %s:\n%s", j.OTLPGRPCAddr, err, logPath, tail(logPath, 20))
	}
	j.t.Logf("jaegertest: jaeger pid %d ready: otlp grpc %s, http %s, query %s",
		cmd.Process.Pid, j.OTLPGRPCAddr, j.OTLPHTTPURL, j.QueryURL)
	return nil
}

func (j *Jaeger) waitReady(ctx context.Context, exited <-chan struct{}) error {
	probe := func(url string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := j.client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if probe("http://"+hostPort(j.Ports.Health)+"/status") && probe(j.QueryURL+"/api/services") {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited during start-up")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// PID returns the running process's id, or 0.
func (j *Jaeger) PID() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cmd == nil {
		return 0
	}
	return j.cmd.Process.Pid
}

// Kill sends SIGKILL to the process by its PID and waits for it to be gone: a
// collector crash. Its in-memory traces are lost.
func (j *Jaeger) Kill() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.killLocked(syscall.SIGKILL, 0)
}

// Stop asks the process to exit (SIGTERM to its PID), and kills it if it has not
// after a grace period. Stopping a stopped Jaeger does nothing.
func (j *Jaeger) Stop() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.killLocked(syscall.SIGTERM, stopGrace)
}

func (j *Jaeger) killLocked(sig syscall.Signal, grace time.Duration) error {
	if j.cmd == nil {
		return nil
	}
	pid := j.cmd.Process.Pid
	defer func() { j.cmd, j.exited = nil, nil }()
	// Process.Signal targets exactly this child, and is a no-op error once it has
	// been reaped, so a recycled PID is never hit.
	if err := j.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal jaeger pid %d: %w", pid, err)
	}
	if grace > 0 {
		select {
		case <-j.exited:
			return nil
		case <-time.After(grace):
			j.t.Logf("jaegertest: pid %d ignored %v for %v; killing it", pid, sig, grace)
			if err := j.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				return fmt.Errorf("kill jaeger pid %d: %w", pid, err)
			}
		}
	}
	<-j.exited
	return nil
}

// logTail writes the end of the latest log to the test log.
func (j *Jaeger) logTail(lines int) {
	if j.starts == 0 {
		return
	}
	p := filepath.Join(j.dir, fmt.Sprintf("jaeger-%d.log", j.starts))
	j.t.Logf("jaegertest: tail of %s:\n%s", p, tail(p, lines))
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			lines--
			if lines == 0 {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}
