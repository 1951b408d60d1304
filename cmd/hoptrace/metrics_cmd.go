package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hoptrace/hoptrace/agent"
)

func newMetricsCmd() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "metrics [NAME-PREFIX...]",
		Short: "Print the agent's Prometheus metrics",
		Long: `Print the running agent's Prometheus metrics (the text format its /metrics
serves) from its admin socket: for a node without curl, or an image without
a shell. With arguments, only the samples whose metric name starts with one
of them (comments dropped).`,
		Example: `  sudo hoptrace metrics
  sudo hoptrace metrics hoptrace_local_handoffs_total hoptrace_export
  kubectl exec -n hoptrace ds/hoptrace -- hoptrace metrics hoptrace_local_handoffs`,
		RunE: func(cmd *cobra.Command, prefixes []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var b bytes.Buffer
			if err := agent.NewClient(socket).Metrics(ctx, &b); err != nil {
				return clientErr(err)
			}
			w := cmd.OutOrStdout()
			if len(prefixes) == 0 {
				_, err := w.Write(b.Bytes())
				return err
			}
			s := bufio.NewScanner(&b)
			s.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for s.Scan() {
				line := s.Text()
				if strings.HasPrefix(line, "#") {
					continue
				}
				for _, p := range prefixes {
					if strings.HasPrefix(line, p) {
						fmt.Fprintln(w, line)
						break
					}
				}
			}
			return s.Err()
		},
	}
	adminFlag(cmd, &socket)
	return cmd
}
