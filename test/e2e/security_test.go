package e2e

// This file has no build tag: the checks run on the manifests with the unit
// tests (manifests_test.go) and on the live agent pod in the e2e suite.

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Capability bits, from linux/capability.h.
const (
	capSysChroot = 18
	capSysPtrace = 19
	capSysAdmin  = 21
)

// wantCaps are the capabilities each container of the agent's pod runs with,
// and nothing else (deploy/daemonset.yaml says why each one).
var wantCaps = map[string]struct {
	names []corev1.Capability // sorted
	mask  uint64
}{
	"agent":       {[]corev1.Capability{"SYS_ADMIN", "SYS_PTRACE"}, 1<<capSysAdmin | 1<<capSysPtrace},
	"mount-bpffs": {[]corev1.Capability{"SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"}, 1<<capSysAdmin | 1<<capSysChroot | 1<<capSysPtrace},
}

// podSecurityProblems lists how the agent's pod spec falls short of least
// privilege: a privileged container, capabilities beyond wantCaps, a
// writable root filesystem, no RuntimeDefault seccomp profile, or a
// Bidirectional mount.
func podSecurityProblems(spec corev1.PodSpec) []string {
	var out []string
	if sc := spec.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		out = append(out, fmt.Sprintf("pod seccomp profile %+v, want RuntimeDefault", sc))
	}
	containers := append(slices.Clone(spec.InitContainers), spec.Containers...)
	seen := map[string]bool{}
	for _, c := range containers {
		seen[c.Name] = true
		want, ok := wantCaps[c.Name]
		if !ok {
			out = append(out, "unexpected container "+c.Name)
			continue
		}
		sc := c.SecurityContext
		if sc == nil || sc.Capabilities == nil {
			out = append(out, fmt.Sprintf("container %s: no capabilities in its security context: %+v", c.Name, sc))
			continue
		}
		if sc.Privileged != nil && *sc.Privileged {
			out = append(out, "container "+c.Name+" is privileged")
		}
		add := slices.Clone(sc.Capabilities.Add)
		slices.Sort(add)
		if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(add, want.names) {
			out = append(out, fmt.Sprintf("container %s: capabilities drop %v add %v, want drop [ALL] add %v", c.Name, sc.Capabilities.Drop, add, want.names))
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			out = append(out, "container "+c.Name+": root filesystem not read-only")
		}
		for _, m := range c.VolumeMounts {
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
				out = append(out, "container "+c.Name+": mount "+m.MountPath+" is Bidirectional (needs privileged)")
			}
		}
	}
	for name := range wantCaps {
		if !seen[name] {
			out = append(out, "no container "+name)
		}
	}
	return out
}
