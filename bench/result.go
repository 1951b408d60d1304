package bench

import (
	"encoding/json"
	"fmt"
	"os"
)

// Result is one measured run: one load scenario against one setup, in one
// round (results.runs.json). Summary embeds it for the medians (results.json).
type Result struct {
	Scenario  string  `json:"scenario"`   // e.g. "http-1k", "grpc-max", "http-close-max"
	Setup     string  `json:"setup"`      // e.g. "direct", "hoptrace-100"
	QPSTarget float64 `json:"qps_target"` // 0: as fast as it goes
	Conns     int     `json:"connections"`
	RPS       float64 `json:"rps"` // achieved
	P50us     float64 `json:"p50_us"`
	P90us     float64 `json:"p90_us"`
	P99us     float64 `json:"p99_us"`
	P999us    float64 `json:"p999_us"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"` // non-2xx, non-SERVING and socket errors
	// CPUSeconds and RSSMB cover the setup's proxy processes only (the agent,
	// iptproxy, both nginx or both caddy instances); zero for direct.
	CPUSeconds float64 `json:"cpu_s"`
	RSSMB      float64 `json:"rss_mb"` // peak RSS (VmHWM) during the run, summed over processes
	// AnonMB and FileMB split the resident set at its sampled peak: anonymous
	// memory (heap, stacks) and mapped files (mostly the binary itself, shared
	// page cache). Threads is the most OS threads seen. Sampled every 100ms.
	AnonMB  float64 `json:"rss_anon_mb"`
	FileMB  float64 `json:"rss_file_mb"`
	Threads int     `json:"threads"`
	Spans   int64   `json:"spans"` // spans the OTLP receiver got during the run
	// ReceiverCPUSeconds is the OTLP receiver's CPU over the run: not the
	// setup's, but spent on the same cores.
	ReceiverCPUSeconds float64 `json:"receiver_cpu_s,omitempty"`
	DurationS          float64 `json:"duration_s"`
	// Load1 is the machine's 1-minute load average when the run began: on a
	// shared machine, what else was competing for the cores.
	Load1 float64 `json:"load1"`
	// Round is the round (1, 2, …) the run belongs to; 0 in a Summary.
	Round int `json:"round,omitempty"`
}

// Summary is one (scenario, setup) over all rounds: every field of the
// embedded Result is the median of that field over the rounds, taken field by
// field (so p50 and p99 may come from different rounds), plus the spread of
// the throughput and the tail.
type Summary struct {
	Result
	Runs     int     `json:"runs"` // rounds that measured this cell
	RPSMin   float64 `json:"rps_min"`
	RPSMax   float64 `json:"rps_max"`
	P99MinUs float64 `json:"p99_min_us"`
	P99MaxUs float64 `json:"p99_max_us"`
}

// Round says when one round of the matrix ran and how busy the machine was.
type Round struct {
	Round   int    `json:"round"`
	Began   string `json:"began"`   // RFC 3339, UTC
	Elapsed string `json:"elapsed"` // wall time of the round
	// Load1 is the 1-minute load average when the round began; Load1Min and
	// Load1Max range over the starts of its runs.
	Load1    float64 `json:"load1"`
	Load1Min float64 `json:"load1_min"`
	Load1Max float64 `json:"load1_max"`
	// Conntrack is the number of conntrack entries in the two pods after each
	// setup's warm-up: 0 means connection tracking is off there, as it must be
	// for every setup but iptables.
	Conntrack map[string]int `json:"conntrack,omitempty"`
}

// Meta says where and how results were measured.
type Meta struct {
	Date     string            `json:"date"`
	CPU      string            `json:"cpu"`
	Cores    int               `json:"cores"`
	Kernel   string            `json:"kernel"`
	Command  string            `json:"command"`
	Versions map[string]string `json:"versions"` // go, nginx, caddy, fortio, hoptrace
	Elapsed  string            `json:"elapsed"`  // wall time of the whole matrix
	// RunSeconds is the length of each measured run (-duration).
	RunSeconds float64  `json:"run_seconds,omitempty"`
	Rounds     []Round  `json:"rounds,omitempty"`
	Notes      []string `json:"notes,omitempty"`
	// Scenarios describes the load shapes, in the order they ran.
	Scenarios []ScenarioInfo `json:"scenarios,omitempty"`
}

// ScenarioInfo names a load shape and says what it is, for the report.
type ScenarioInfo struct {
	Name string `json:"name"`
	What string `json:"what"`
}

// WriteJSON writes v as indented JSON to path, through a temporary file so a
// crash never leaves half a file behind.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadJSON decodes the JSON file at path into v.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
