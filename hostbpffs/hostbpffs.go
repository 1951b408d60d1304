// Package hostbpffs makes sure a node's bpffs is mounted and is a shared mount,
// from inside a container. The hoptrace DaemonSet runs it as an init container
// (hoptrace mount-bpffs), so that the agent container needs neither privileged
// mode nor Bidirectional mount propagation, and the node needs no setup: the
// agent mounts the bpffs with HostToContainer propagation, which the container
// runtime allows only for a shared or slave host mount.
package hostbpffs

import (
	"errors"
	"fmt"
	"strings"
)

// Report says what Ensure found and did.
type Report struct {
	Path        string // the bpffs mount point, as the node sees it
	Mounted     bool   // there was no bpffs at Path: one was mounted
	MadeShared  bool   // the mount was private: it was made shared
	Propagation string // afterwards: "shared", "slave" or "shared,slave"
}

func (r Report) String() string {
	var did []string
	if r.Mounted {
		did = append(did, "mounted")
	}
	if r.MadeShared {
		did = append(did, "made shared")
	}
	if len(did) == 0 {
		did = append(did, "already mounted")
	}
	return fmt.Sprintf("bpffs at %s: %s (propagation %s)", r.Path, strings.Join(did, ", "), r.Propagation)
}

var (
	// ErrNotMountPoint means Path is on a bpffs mounted above it: its
	// propagation cannot be set without changing the parent's.
	ErrNotMountPoint = errors.New("not a mount point of its own")
	// ErrNotMountNamespace means the namespace file is not a mount namespace.
	ErrNotMountNamespace = errors.New("not a mount namespace")
)
