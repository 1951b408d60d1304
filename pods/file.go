package pods

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"
)

// FileEntry is one pod in a pods file.
type FileEntry struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	UID               string            `json:"uid,omitempty"`
	Netns             string            `json:"netns"`
	Cgroup            string            `json:"cgroup"`
	Labels            map[string]string `json:"labels,omitempty"`
	SkipInboundPorts  []uint16          `json:"skipInboundPorts,omitempty"`
	SkipOutboundPorts []uint16          `json:"skipOutboundPorts,omitempty"`
	// InferContext is the pods-file form of hoptrace.io/context: infer.
	InferContext bool `json:"inferContext,omitempty"`
}

// ErrBadEntry marks a pods-file entry that cannot be used; the error names it.
var ErrBadEntry = errors.New("bad pods file entry")

// ParseFile parses a pods file: a YAML list of entries. A file that is not such a
// list is an error; a bad entry is a Problem naming it, and the others still count.
func ParseFile(data []byte) (Snapshot, error) {
	var entries []FileEntry
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalStrict(data, &entries); err != nil {
			return Snapshot{}, fmt.Errorf("pods file: want a YAML list of {name, namespace, netns, cgroup, labels}: %w", err)
		}
	}
	var snap Snapshot
	seen := map[string]int{}
	for i, e := range entries {
		where := "entry " + strconv.Itoa(i+1)
		if e.Name != "" {
			where += fmt.Sprintf(" (%s/%s)", orDefault(e.Namespace), e.Name)
		}
		var missing []string
		for _, f := range []struct{ name, v string }{{"name", e.Name}, {"netns", e.Netns}, {"cgroup", e.Cgroup}} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			snap.Problems = append(snap.Problems, fmt.Errorf("pods file %s: %w: missing %v", where, ErrBadEntry, missing))
			continue
		}
		p := Pod{
			UID: e.UID, Name: e.Name, Namespace: orDefault(e.Namespace), Labels: e.Labels,
			NetnsPath: e.Netns, CgroupDir: e.Cgroup,
			SkipInboundPorts: e.SkipInboundPorts, SkipOutboundPorts: e.SkipOutboundPorts,
			InferContext: e.InferContext,
		}
		if j, dup := seen[p.ID()]; dup {
			snap.Problems = append(snap.Problems, fmt.Errorf("pods file %s: %w: same pod as entry %d", where, ErrBadEntry, j))
			continue
		}
		seen[p.ID()] = i + 1
		snap.Pods = append(snap.Pods, p)
	}
	return snap, nil
}

func orDefault(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// FileSource watches a pods file and reports its pods whenever it changes.
type FileSource struct {
	Path string
	// Poll is how often the file is checked for changes (default 500ms). Polling
	// the content hash works on every filesystem, including bind mounts and
	// editors that replace files.
	Poll time.Duration
	// Resync re-sends an unchanged snapshot this often (default 30s), so the agent
	// re-reconciles (e.g. re-attaches a pod whose attach failed).
	Resync time.Duration
}

// Run implements Source. A file that cannot be read or parsed is reported as a
// problem and keeps the last good pods, so a half-written file never detaches
// everything.
func (s *FileSource) Run(ctx context.Context, out chan<- Snapshot) error {
	poll, resync := s.Poll, s.Resync
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	if resync <= 0 {
		resync = 30 * time.Second
	}
	var last Snapshot // the last good parse
	var lastSum [32]byte
	var lastSent time.Time
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		data, err := os.ReadFile(s.Path)
		snap := last
		if err != nil {
			snap.Problems = []error{fmt.Errorf("read pods file: %w", err)}
			data = []byte(err.Error()) // a new error is a change too
		} else if parsed, perr := ParseFile(data); perr != nil {
			snap.Problems = []error{fmt.Errorf("%s: %w", s.Path, perr)}
		} else {
			snap, last = parsed, parsed
		}
		if sum := sha256.Sum256(data); lastSent.IsZero() || sum != lastSum || time.Since(lastSent) >= resync {
			select {
			case out <- snap:
				lastSum, lastSent = sum, time.Now()
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
	}
}
