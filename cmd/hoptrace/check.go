package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/hoptrace/hoptrace/preflight"
)

func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Check that this node can run the hoptrace agent",
		Long: `Check probes this node for everything the agent needs: kernel version, the bpf()
syscall, BTF, the cgroup v2 mount, bpffs, every BPF program type, map type and
helper hoptrace uses (each loaded into the kernel for real), the capabilities of
this process, and finally loads hoptrace's own programs through the verifier.

Each item prints one line: ok, warn (optional, or fixed by the agent itself) or
missing, with a hint on how to fix it. The exit code is 1 if anything required
is missing, 0 otherwise. Run it as the agent would run: as root.`,
		Example: `  sudo hoptrace check
  kubectl -n hoptrace exec ds/hoptrace -- hoptrace check`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !preflight.Report(cmd.OutOrStdout(), preflight.Run()) {
				return &exitError{code: 1, err: errors.New("this node cannot run the agent: see the missing items above")}
			}
			return nil
		},
	}
}
