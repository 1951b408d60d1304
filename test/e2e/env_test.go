//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// env is what the suite needs to know about the cluster it runs against. Every
// field has a default that suits kind; scripts/cluster-up.sh's cluster and
// other shared machines override a few through the environment.
type env struct {
	kubeconfig string
	kubectl    string
	helm       string
	repo       string // the repository root (charts and manifests)

	imageTag    string // tag of hoptrace/hoptrace, sampleapp, jaeger, e2e-nodeprobe
	pinDir      string // host.pinDir of the release, checked after uninstall
	cgroup2Path string // host.cgroup2Path: the nodes' cgroup v2 mount
	helmArgs    []string
	keep        bool // leave everything installed, for debugging

	rest   *rest.Config
	client kubernetes.Interface
}

// Namespaces the suite creates (and deletes, unless HOPTRACE_E2E_KEEP=1).
const (
	agentNS   = "hoptrace"
	tracingNS = "tracing"
	appNS     = "hoptrace-e2e"
	release   = "hoptrace"
)

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// tool finds a command: $ENV, then PATH, then the project's tool cache.
func tool(envKey, name string) (string, error) {
	if p := os.Getenv(envKey); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	cache := getenv("HOPTRACE_CACHE", filepath.Join(os.Getenv("HOME"), ".cache", "hoptrace"))
	p := filepath.Join(cache, "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found: set %s, put it on PATH or build it into %s/bin", name, envKey, cache)
}

func loadEnv(t *testing.T) *env {
	t.Helper()
	kubeconfig := os.Getenv("KUBECONFIG")
	if kubeconfig == "" {
		t.Fatal("KUBECONFIG is not set: point it at the cluster to test (scripts/cluster-up.sh env, or kind's)")
	}
	e := &env{
		kubeconfig:  kubeconfig,
		imageTag:    getenv("HOPTRACE_E2E_IMAGE_TAG", "dev"),
		pinDir:      getenv("HOPTRACE_E2E_PIN_DIR", "/sys/fs/bpf/hoptrace"),
		cgroup2Path: getenv("HOPTRACE_E2E_CGROUP2_PATH", "/sys/fs/cgroup"),
		helmArgs:    strings.Fields(os.Getenv("HOPTRACE_E2E_HELM_ARGS")),
		keep:        os.Getenv("HOPTRACE_E2E_KEEP") == "1",
	}
	var err error
	if e.kubectl, err = tool("KUBECTL", "kubectl"); err != nil {
		t.Fatal(err)
	}
	if e.helm, err = tool("HELM", "helm"); err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	e.repo = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if e.rest, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
		t.Fatalf("load %s: %v", kubeconfig, err)
	}
	if e.client, err = kubernetes.NewForConfig(e.rest); err != nil {
		t.Fatalf("kubernetes client: %v", err)
	}
	return e
}

func (e *env) path(rel string) string { return filepath.Join(e.repo, filepath.FromSlash(rel)) }

// run runs a command with the cluster's kubeconfig and returns its stdout;
// stderr goes into the error.
func (e *env) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (e *env) kubectlRun(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := e.run(ctx, e.kubectl, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) helmRun(t *testing.T, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := e.run(ctx, e.helm, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// image names a locally built image (scripts/image.sh), loaded into the nodes.
func (e *env) image(name string) string { return "hoptrace/" + name + ":" + e.imageTag }

// eventually polls check every interval until it returns nil or the timeout
// passes, then fails the test with the last error.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
