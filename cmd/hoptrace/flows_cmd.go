package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hoptrace/hoptrace/agent"
)

var errorsIs = errors.Is

func newFlowsCmd() *cobra.Command {
	var socket, output, pod string
	var watch bool
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Show the connections the agent captured or let through",
		Long: `Show recent and open connections of the node's pods: who connected (client),
where it was going (original destination), the protocol the proxy detected
(http1, h2, grpc, websocket, tls, opaque), requests, bytes, the mean time of each
proxy leg per request, the last sampled trace id, and whether the connection was
redirected into the proxy or bypassed (and why: no-listener, excluded-port,
excluded-cidr, port-not-captured).

With --watch, flows are printed as they finish until Ctrl-C.`,
		Example: `  sudo hoptrace flows
  sudo hoptrace flows --pod hello -o wide
  sudo hoptrace flows --watch -o json | jq .last_trace_id`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "wide" && output != "json" {
				return fmt.Errorf("-o %q: want table, wide or json", output)
			}
			c := agent.NewClient(socket)
			w := cmd.OutOrStdout()
			if watch {
				ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
				defer stop()
				// Fail fast and clearly when there is no agent.
				if _, err := c.Pods(ctx); err != nil {
					return clientErr(err)
				}
				tw := newFlowWriter(w, output)
				tw.header()
				return clientErr(c.WatchFlows(ctx, pod, func(f agent.Flow) error {
					tw.row(f)
					return tw.flush()
				}))
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			flows, err := c.Flows(ctx, pod)
			if err != nil {
				return clientErr(err)
			}
			sort.SliceStable(flows, func(i, j int) bool { return flows[i].Start.Before(flows[j].Start) })
			if output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(agent.FlowsReport{Flows: flows})
			}
			fw := newFlowWriter(w, output)
			fw.header()
			for _, f := range flows {
				fw.row(f)
			}
			return fw.flush()
		},
	}
	adminFlag(cmd, &socket)
	cmd.Flags().StringVar(&pod, "pod", "", "only flows of this pod (name or namespace/name)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "stream flows as they finish")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, wide or json")
	return cmd
}

type flowWriter struct {
	w      io.Writer
	tw     *tabwriter.Writer
	output string
}

func newFlowWriter(w io.Writer, output string) *flowWriter {
	return &flowWriter{w: w, tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0), output: output}
}

func (fw *flowWriter) header() {
	switch fw.output {
	case "table":
		fmt.Fprintln(fw.tw, "POD\tDIR\tCLIENT\tORIGINAL-DST\tPROTO\tREQS\tBYTES(IN/OUT)\tLATENCY\tTRACE\tCAPTURE")
	case "wide":
		fmt.Fprintln(fw.tw, "START\tPOD\tDIR\tCLIENT\tORIGINAL-DST\tPROTO\tREQS\tBYTES(IN/OUT)\tLEGS\tTRACE\tCAPTURE\tSTATE")
	}
}

func (fw *flowWriter) row(f agent.Flow) {
	switch fw.output {
	case "json":
		_ = json.NewEncoder(fw.w).Encode(f)
		return
	case "table":
		fmt.Fprintf(fw.tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", f.Pod, f.Direction, dash(f.Client), f.Dst, f.Protocol,
			f.Requests, bytesPair(f), totalLatency(f), shortTrace(f.LastTraceID), capture(f))
	case "wide":
		state := "closed"
		if f.Open {
			state = "open"
		}
		fmt.Fprintf(fw.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", f.Start.Format("15:04:05.000"), f.Pod, f.Direction,
			dash(f.Client), f.Dst, f.Protocol, f.Requests, bytesPair(f), legs(f), dash(f.LastTraceID), capture(f), state)
	}
}

func (fw *flowWriter) flush() error { return fw.tw.Flush() }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func capture(f agent.Flow) string {
	if f.Redirected {
		return "redirected"
	}
	return "bypassed:" + f.Reason
}

func bytesPair(f agent.Flow) string {
	if !f.Redirected {
		return "-"
	}
	return humanBytes(f.BytesIn) + "/" + humanBytes(f.BytesOut)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + "G"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "M"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + "K"
	}
	return strconv.FormatInt(n, 10)
}

// totalLatency is the server leg's mean: what the client waited per request.
func totalLatency(f agent.Flow) string {
	for leg, ms := range f.LegsMs {
		if strings.HasSuffix(leg, "-server") {
			return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
		}
	}
	return "-"
}

func legs(f agent.Flow) string {
	if len(f.LegsMs) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(f.LegsMs))
	for k := range f.LegsMs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(f.LegsMs[k], 'f', 2, 64) + "ms"
	}
	return strings.Join(parts, ",")
}

func shortTrace(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return dash(id)
}
