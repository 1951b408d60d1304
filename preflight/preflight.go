// Package preflight checks whether a node can run the hoptrace agent: kernel,
// BPF, cgroup v2, bpffs and capabilities, each probed for real.
package preflight

import (
	"fmt"
	"io"
)

// Status is the outcome of one check.
type Status uint8

const (
	OK      Status = iota
	Missing        // required and absent: the agent cannot run
	Warning        // absent but optional, or something the agent fixes itself
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Missing:
		return "missing"
	}
	return "warn"
}

// Result is one line of the report.
type Result struct {
	Name   string
	Status Status
	Detail string // what was found
	Fix    string // how to fix it, when not OK
}

// Report prints one line per result and returns whether every required item is present.
func Report(w io.Writer, results []Result) (ok bool) {
	ok = true
	for _, r := range results {
		line := fmt.Sprintf("%-8s %s", r.Status, r.Name)
		if r.Detail != "" {
			line += ": " + r.Detail
		}
		if r.Status != OK && r.Fix != "" {
			line += " (fix: " + r.Fix + ")"
		}
		fmt.Fprintln(w, line)
		if r.Status == Missing {
			ok = false
		}
	}
	return ok
}
