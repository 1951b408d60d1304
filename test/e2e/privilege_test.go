//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// capsReport is nodeprobe caps' output (test/e2e/nodeprobe).
type capsReport struct {
	Processes []struct {
		PID     int    `json:"pid"`
		Comm    string `json:"comm"`
		CapPrm  string `json:"cap_prm"`
		CapEff  string `json:"cap_eff"`
		CapBnd  string `json:"cap_bnd"`
		Seccomp string `json:"seccomp"`
	} `json:"processes"`
	Errors []string `json:"errors"`
}

func parseCaps(t *testing.T, hex string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatalf("capability set %q: %v", hex, err)
	}
	return v
}

// checkLeastPrivilege checks the agent's pod on a node: its spec as the API
// server holds it (podSecurityProblems);
// its init container left the node's bpffs shared; and the agent process has
// exactly those capabilities and a seccomp filter (in /proc/<pid>/status on
// the node, read by nodeprobe).
func (e *env) checkLeastPrivilege(t *testing.T, node string) {
	t.Helper()
	name := e.agentPod(t, node)
	pod, err := e.client.CoreV1().Pods(agentNS).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range podSecurityProblems(pod.Spec) {
		t.Errorf("pod %s: %s", name, p)
	}

	// The init container ran, and says what it found and did.
	var initDone bool
	for _, st := range pod.Status.InitContainerStatuses {
		if st.Name == "mount-bpffs" && st.State.Terminated != nil && st.State.Terminated.ExitCode == 0 {
			initDone = true
		}
	}
	if !initDone {
		t.Errorf("init container mount-bpffs did not exit 0: %+v", pod.Status.InitContainerStatuses)
	}
	log := strings.TrimSpace(e.logs(t, agentNS, name, "mount-bpffs"))
	t.Logf("node %s, mount-bpffs: %s", node, log)
	if !strings.Contains(log, "bpffs at ") || !(strings.Contains(log, "(propagation shared") || strings.Contains(log, "(propagation slave")) {
		t.Errorf("mount-bpffs on %s: %q, want the bpffs shared or slave", node, log)
	}

	// The agent process as the kernel sees it.
	var id string
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == "agent" {
			_, id, _ = strings.Cut(st.ContainerID, "://")
		}
	}
	if id == "" {
		t.Fatalf("pod %s: no container ID for agent in %+v", name, pod.Status.ContainerStatuses)
	}
	out := e.runNodeProbe(t, node, "nodeprobe-caps-", "caps", "-container-id", id)
	var r capsReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("nodeprobe caps: %v: %s", err, out)
	}
	if len(r.Processes) == 0 || len(r.Errors) > 0 {
		t.Fatalf("nodeprobe caps found no process of container %s: %s", id, out)
	}
	want := wantCaps["agent"].mask
	for _, p := range r.Processes {
		for set, v := range map[string]string{"CapEff": p.CapEff, "CapPrm": p.CapPrm, "CapBnd": p.CapBnd} {
			if got := parseCaps(t, v); got != want {
				t.Errorf("agent pid %d (%s) on %s: %s %#x, want %#x (SYS_ADMIN, SYS_PTRACE)", p.PID, p.Comm, node, set, got, want)
			}
		}
		if p.Seccomp != "2" {
			t.Errorf("agent pid %d (%s) on %s: seccomp mode %s, want 2 (filter)", p.PID, p.Comm, node, p.Seccomp)
		}
		t.Logf("node %s: agent pid %d (%s): CapEff %s CapBnd %s Seccomp %s", node, p.PID, p.Comm, p.CapEff, p.CapBnd, p.Seccomp)
	}
}
