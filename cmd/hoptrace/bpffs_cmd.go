package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hoptrace/hoptrace/hostbpffs"
)

func newMountBPFFSCmd() *cobra.Command {
	var path, mountNS string
	cmd := &cobra.Command{
		Use:   "mount-bpffs",
		Short: "Make sure the node's bpffs is mounted and shared (the DaemonSet's init container)",
		Long: `Make sure the node has a bpffs mounted at --path and that it is a shared (or
slave) mount: mount one if there is none, make a private one shared, and
change nothing else.

The hoptrace DaemonSet runs this as its init container, so the node needs no
setup and the agent container needs neither privileged mode nor Bidirectional
mount propagation: it mounts the bpffs with HostToContainer propagation, which
the container runtime allows only for a shared or slave host mount.

It works in the node's mount namespace, which it enters through --mount-ns
(default: that of its parent process, the container runtime's shim when it runs
as a hostPID container; the kubelet's hostPath volumes come from there). It
needs CAP_SYS_ADMIN, CAP_SYS_CHROOT and CAP_SYS_PTRACE.`,
		Example: `  # As the DaemonSet's init container does
  hoptrace mount-bpffs --path /sys/fs/bpf

  # On a node, as root: in the mount namespace of PID 1
  sudo hoptrace mount-bpffs --mount-ns /proc/1/ns/mnt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if mountNS == "" {
				ppid := os.Getppid()
				if ppid == 0 {
					return errors.New("no parent process in sight (run it with hostPID, or give --mount-ns)")
				}
				mountNS = fmt.Sprintf("/proc/%d/ns/mnt", ppid)
			}
			r, err := hostbpffs.Ensure(mountNS, path)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s, in mount namespace %s\n", r, mountNS)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "path", "/sys/fs/bpf", "the node's bpffs mount point")
	f.StringVar(&mountNS, "mount-ns", "", "the node's mount namespace file (default: the parent process's, /proc/PPID/ns/mnt)")
	return cmd
}
