// Command hoptrace is the hoptrace node agent and its command-line client.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=v0.1.0".
var version = "dev"

// exitError carries an exit code through cobra without printing usage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hoptrace",
		Short: "Transparent request tracing for Kubernetes pods, with eBPF and no sidecars",
		Long: `hoptrace traces every HTTP/1.1, HTTP/2 and gRPC request between your pods
without sidecars, init containers, iptables or tracing libraries.

One agent per node steers each pod's TCP traffic into its own proxy with eBPF,
propagates W3C and B3 trace headers, records four spans per hop (outbound
server/client, inbound server/client) and exports them over OTLP to Jaeger,
Tempo or any OpenTelemetry collector. Apps only forward the trace headers they
receive, as with Linkerd or Istio.`,
		Example: `  # Is this node able to run the agent?
  sudo hoptrace check

  # Print the version
  hoptrace version`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newAwaitCmd(), newCheckCmd(), newPodsCmd(), newFlowsCmd(), newMetricsCmd(), newMountBPFFSCmd(), newVersionCmd())
	return root
}

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		return
	}
	code := 2
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintln(os.Stderr, "hoptrace:", err)
	os.Exit(code)
}
