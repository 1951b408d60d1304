package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hoptrace/hoptrace/redirect"
)

func newAwaitCmd() *cobra.Command {
	var (
		port     uint16
		timeout  time.Duration
		failOpen bool
	)
	cmd := &cobra.Command{
		Use:   "await-capture",
		Short: "Wait until the agent captures this pod (for an init container)",
		Long: `Wait until the hoptrace agent has captured the pod this command runs in, then
exit 0. Run it as the pod's first init container so the app starts only once its
traffic is traced, as Istio's holdApplicationUntilProxyStarts does: a connection
an app opens before capture (a gRPC channel, a keep-alive pool) stays untraced
for its whole life.

It watches its own network namespace for the agent's outbound listener
(127.0.0.1:15001) in /proc/self/net/tcp; it opens no connection and needs no
privileges. If the agent does not capture the pod within --timeout it exits 1,
or 0 with --fail-open (the app then starts uncaptured, which is what the pod
would do without hoptrace).`,
		Example: `  # In a pod spec:
  initContainers:
  - name: await-hoptrace
    image: hoptrace/hoptrace:v0.1.0
    args: ["await-capture", "--timeout", "60s", "--fail-open"]`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			deadline := time.Now().Add(timeout)
			for {
				ok, err := listening("/proc/self/net/tcp", port)
				if err != nil {
					return err
				}
				if ok {
					fmt.Fprintln(cmd.OutOrStdout(), "hoptrace: pod captured")
					return nil
				}
				if time.Now().After(deadline) {
					msg := fmt.Sprintf("the hoptrace agent did not capture this pod within %s (no listener on 127.0.0.1:%d)", timeout, port)
					if failOpen {
						fmt.Fprintln(cmd.ErrOrStderr(), "hoptrace:", msg+"; starting uncaptured (--fail-open)")
						return nil
					}
					return &exitError{code: 1, err: errors.New(msg)}
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
	}
	f := cmd.Flags()
	f.Uint16Var(&port, "port", redirect.DefaultOutboundPort, "the agent's outbound listener port inside pods")
	f.DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	f.BoolVar(&failOpen, "fail-open", false, "exit 0 even if the pod was not captured in time")
	return cmd
}

// listening reports whether a TCP socket listens on 127.0.0.1:port, read from a
// /proc/net/tcp table (local address in hex, state 0A = LISTEN).
func listening(table string, port uint16) (bool, error) {
	f, err := os.Open(table)
	if err != nil {
		return false, fmt.Errorf("read socket table: %w", err)
	}
	defer f.Close()
	return listeningIn(f, port)
}

func listeningIn(r io.Reader, port uint16) (bool, error) {
	want := fmt.Sprintf("0100007F:%04X", port)
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 4 || fields[1] != want {
			continue
		}
		if st, err := strconv.ParseUint(fields[3], 16, 8); err == nil && st == 0x0A {
			return true, nil
		}
	}
	return false, s.Err()
}
