// Package kubetest runs a real Kubernetes API server (kube-apiserver v1.34 built
// by scripts/kube-apiserver.sh, backed by Debian's etcd) for tests: loopback
// only, with its own CA, certificates and data directory, RBAC on, and stopped by
// pid when the test ends. There is no scheduler, controller-manager or kubelet:
// tests create objects (pods bound to a node, say) directly.
package kubetest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/testenv"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AdminUser is the admin identity's user name; it is in group system:masters,
// which RBAC lets do anything.
const AdminUser = "kubetest-admin"

// ServiceCIDR is the cluster's service IP range; its first address is the
// kubernetes Service's and is in the serving certificate.
const ServiceCIDR = "10.96.0.0/12"

// How long the servers get to start and stop. Starting is slow on busy CI cores:
// the API server installs every built-in API and bootstraps RBAC first.
const (
	startTimeout = 2 * time.Minute
	stopGrace    = 15 * time.Second
)

// Cluster is a running API server and its etcd.
type Cluster struct {
	// Host is the API server's URL (https://127.0.0.1:<port>).
	Host string
	// Config is the admin identity's client configuration.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for the admin identity, for kubectl.
	Kubeconfig string
	// CAPEM is the cluster CA certificate, trusted for serving and client certs.
	CAPEM []byte

	ca        *authority
	dir       string
	etcd      *process
	apiserver *process
}

// Start runs etcd and kube-apiserver for the test and stops both (and removes
// their data) in t.Cleanup. Without the binaries the test is skipped, or fails
// where the real components are required (HOPTRACE_REQUIRE_PRIVILEGED=1 or CI).
func Start(t testing.TB) *Cluster {
	t.Helper()
	apiserver, etcd := binaries(t)
	dir := t.TempDir()
	c, err := start(t, dir, apiserver, etcd)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return c
}

func start(t testing.TB, dir, apiserverBin, etcdBin string) (*Cluster, error) {
	ca, err := newAuthority()
	if err != nil {
		return nil, err
	}
	_, serviceNet, _ := net.ParseCIDR(ServiceCIDR)
	serviceIP := serviceNet.IP.To4()
	serviceIP[3]++
	servingCert, servingKey, err := ca.serving(serviceIP)
	if err != nil {
		return nil, err
	}
	saKey, err := signingKey()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"ca.crt": ca.certPEM, "apiserver.crt": servingCert, "apiserver.key": servingKey, "sa.key": saKey,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	host := "https://127.0.0.1:" + strconv.Itoa(ports[2])

	etcd, err := startProcess("etcd", filepath.Join(dir, "etcd.log"), etcdBin,
		"--name=kubetest",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--logger=zap", "--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { stopLogged(t, etcd) })

	apiserver, err := startProcess("kube-apiserver", filepath.Join(dir, "apiserver.log"), apiserverBin,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+dir,
		"--tls-cert-file="+filepath.Join(dir, "apiserver.crt"),
		"--tls-private-key-file="+filepath.Join(dir, "apiserver.key"),
		"--client-ca-file="+filepath.Join(dir, "ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range="+ServiceCIDR,
		"--allow-privileged=true",
		// No controller-manager creates the "default" ServiceAccount of new
		// namespaces, so its admission check would refuse every pod.
		"--disable-admission-plugins=ServiceAccount",
		// The Endpoints of the kubernetes Service may not be a loopback address.
		"--endpoint-reconciler-type=none",
		// Two shared cores: skip what tests do not need.
		"--enable-priority-and-fairness=false", "--profiling=false",
	)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { stopLogged(t, apiserver) })

	c := &Cluster{Host: host, CAPEM: ca.certPEM, ca: ca, dir: dir, etcd: etcd, apiserver: apiserver}
	if c.Config, err = c.userConfig(AdminUser, []string{"system:masters"}); err != nil {
		return nil, err
	}
	if err := waitReady(c.Config, apiserver, etcd); err != nil {
		return nil, err
	}
	if c.Kubeconfig, err = c.writeKubeconfig(c.Config); err != nil {
		return nil, err
	}
	return c, nil
}

// UserConfig returns a client configuration authenticating as user in groups,
// with a client certificate signed by the cluster CA: what RBAC tests need.
// A service account is "system:serviceaccount:<namespace>:<name>" in groups
// "system:serviceaccounts" and "system:serviceaccounts:<namespace>".
func (c *Cluster) UserConfig(t testing.TB, user string, groups ...string) *rest.Config {
	t.Helper()
	cfg, err := c.userConfig(user, groups)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return cfg
}

func (c *Cluster) userConfig(user string, groups []string) (*rest.Config, error) {
	cert, key, err := c.ca.client(user, groups)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            c.Host,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM, CertData: cert, KeyData: key},
		UserAgent:       "kubetest/" + user,
		// The defaults (5 qps) make object-heavy test set-ups crawl.
		QPS: 100, Burst: 200,
	}, nil
}

// Client returns a clientset for cfg, failing the test if cfg is unusable.
func Client(t testing.TB, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kubetest: client: %v", err)
	}
	return cs
}

func (c *Cluster) writeKubeconfig(cfg *rest.Config) (string, error) {
	path := filepath.Join(c.dir, "admin.kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAPEM}
	kc.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: AdminUser}
	kc.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, nil
}

// waitReady polls /readyz, which passes only once etcd is reachable and the
// RBAC bootstrap roles exist, so tests can rely on both.
func waitReady(cfg *rest.Config, apiserver, etcd *process) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("readiness client: %w", err)
	}
	hc.Timeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last string
	for {
		for _, p := range []*process{etcd, apiserver} {
			if p.exited() {
				return fmt.Errorf("%s exited during start-up (%v); log:\n%s", p.name, p.err, p.logTail())
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/readyz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s (last: %s); log:\n%s", startTimeout, last, apiserver.logTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func stopLogged(t testing.TB, p *process) {
	if err := p.stop(stopGrace); err != nil {
		t.Errorf("kubetest: %v", err)
	}
}

// binaries finds kube-apiserver in the hoptrace cache (where `make
// kube-apiserver` puts it) or on PATH, and etcd on PATH.
func binaries(t testing.TB) (apiserver, etcd string) {
	t.Helper()
	apiserver = filepath.Join(BinDir(), "kube-apiserver")
	if _, err := os.Stat(apiserver); err != nil {
		if apiserver, err = exec.LookPath("kube-apiserver"); err != nil {
			unavailable(t, "kube-apiserver not built: `make kube-apiserver` (scripts/kube-apiserver.sh build) builds it into "+BinDir())
		}
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		unavailable(t, "etcd not installed: `make kube-apiserver` (scripts/kube-apiserver.sh build) installs Debian's etcd-server")
	}
	return apiserver, etcd
}

// BinDir is where scripts/kube-apiserver.sh puts the Kubernetes binaries.
func BinDir() string {
	cache := os.Getenv("HOPTRACE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "hoptrace")
	}
	return filepath.Join(cache, "bin")
}

// unavailable skips, except in CI (CI or HOPTRACE_REQUIRE_PRIVILEGED=1), where
// a missing API server must not silently turn the Kubernetes tests off.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" && !testenv.Required() {
		t.Fatalf("%s (CI is set: not skipping)", reason)
	}
	testenv.Unavailable(t, reason)
}
