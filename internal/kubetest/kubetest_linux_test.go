package kubetest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStart(t *testing.T) {
	var pids []int
	var dir string
	t.Run("cluster", func(t *testing.T) {
		c := Start(t)
		pids = []int{c.etcd.cmd.Process.Pid, c.apiserver.cmd.Process.Pid}
		dir = c.dir
		ctx := context.Background()

		admin := Client(t, c.Config)
		v, err := admin.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		if v.GitVersion != "v1.34.2" {
			t.Errorf("server version %q, want v1.34.2 (the build stamps it)", v.GitVersion)
		}
		if _, err := admin.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("admin list secrets: %v", err)
		}

		// A certificate from the CA authenticates; RBAC then refuses what no
		// binding grants.
		nobody := Client(t, c.UserConfig(t, "nobody", "some-group"))
		_, err = nobody.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("unbound user listing pods: %v, want forbidden", err)
		}
		if err != nil && !strings.Contains(err.Error(), `"nobody"`) {
			t.Errorf("forbidden error does not name the user: %v", err)
		}

		if kubectl, err := exec.LookPath(BinDir() + "/kubectl"); err == nil {
			out, err := exec.Command(kubectl, "--kubeconfig", c.Kubeconfig, "auth", "can-i", "list", "secrets").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "yes" {
				t.Errorf("kubectl with the admin kubeconfig: %v: %s", err, out)
			}
		}
	})
	if t.Failed() || pids == nil { // failed, or skipped without the binaries
		return
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after cleanup (kill 0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir %s left behind: %v", dir, err)
	}
}
