package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hoptrace/hoptrace/agent"
)

// adminFlag adds --admin-socket to a client command.
func adminFlag(cmd *cobra.Command, socket *string) {
	cmd.Flags().StringVar(socket, "admin-socket", agent.DefaultAdminSocket, "the agent's admin socket")
}

// noAgentExit is the exit code when no agent answers, so scripts can tell it apart.
const noAgentExit = 3

func clientErr(err error) error {
	if err == nil {
		return nil
	}
	if errorsIs(err, agent.ErrNoAgent) {
		return &exitError{code: noAgentExit, err: err}
	}
	return err
}

func newPodsCmd() *cobra.Command {
	var socket, output string
	cmd := &cobra.Command{
		Use:   "pods",
		Short: "List the pods the agent captures",
		Long: `List the pods the running agent captures (state attached) or failed to capture
(state failed, with the error; the agent retries), and problems its pod source
reported (pods it could not resolve).`,
		Example: `  sudo hoptrace pods
  sudo hoptrace pods -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			r, err := agent.NewClient(socket).Pods(ctx)
			if err != nil {
				return clientErr(err)
			}
			w := cmd.OutOrStdout()
			switch output {
			case "json":
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			case "table", "wide":
			default:
				return fmt.Errorf("-o %q: want table, wide or json", output)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			if output == "wide" {
				fmt.Fprintln(tw, "NAMESPACE\tPOD\tSERVICE\tSTATE\tIPS\tSINCE\tNETNS\tCGROUP\tERROR")
			} else {
				fmt.Fprintln(tw, "NAMESPACE\tPOD\tSERVICE\tSTATE\tIPS\tSINCE\tERROR")
			}
			for _, p := range r.Pods {
				age := time.Since(p.Since).Truncate(time.Second).String()
				if output == "wide" {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.Service, p.State, strings.Join(p.IPs, ","), age, p.Netns, p.Cgroup, p.Error)
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.Service, p.State, strings.Join(p.IPs, ","), age, p.Error)
				}
			}
			tw.Flush()
			for _, p := range r.Problems {
				fmt.Fprintln(w, "problem:", p)
			}
			return nil
		},
	}
	adminFlag(cmd, &socket)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, wide or json")
	return cmd
}
