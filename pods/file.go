package pods

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
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

// ErrFileTooLarge is a pods file over MaxFileBytes, and ErrNotRegular a path
// that is no file at all (a directory, a device, a pipe). Either keeps the
// pods of the last good read, as any read error does.
var (
	ErrFileTooLarge = errors.New("pods file too large")
	ErrNotRegular   = errors.New("pods file is not a regular file")
)

// MaxFileBytes bounds what the agent reads of a pods file. A node's pods take
// a few hundred bytes each and a node runs at most a few hundred, so this is
// far above any real file; what it stops is a mistaken path (/dev/zero, a
// log that keeps growing) from growing the agent's heap without end, or
// hanging it on a pipe no one writes.
const MaxFileBytes = 16 << 20

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
	// Settle is how long changed content must stay the same before it counts
	// (default 50ms): a writer that truncates and then writes (os.WriteFile,
	// shell redirection, most editors) leaves the file empty or half-written in
	// between, and taken at face value that detaches pods it never meant to.
	Settle time.Duration
	// Resync re-sends an unchanged snapshot this often (default 30s), so the agent
	// re-reconciles (e.g. re-attaches a pod whose attach failed).
	Resync time.Duration
}

// settleTries bounds how often a changing file is re-read within one poll; a
// file still changing after that is looked at again on the next poll.
const settleTries = 10

// Run implements Source. A file that cannot be read or parsed is reported as a
// problem and keeps the last good pods, and a change counts only once the file
// has stopped changing, so a half-written file never detaches everything.
func (s *FileSource) Run(ctx context.Context, out chan<- Snapshot) error {
	poll, settle, resync := s.Poll, s.Settle, s.Resync
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	if settle <= 0 {
		settle = 50 * time.Millisecond
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
		r, stable := s.read(ctx, settle, lastSum)
		if stable && (lastSent.IsZero() || r.sum != lastSum || time.Since(lastSent) >= resync) {
			snap := last
			if r.err != nil {
				snap.Problems = []error{r.err}
			} else if parsed, err := ParseFile(r.data); err != nil {
				snap.Problems = []error{fmt.Errorf("%s: %w", s.Path, err)}
			} else {
				snap, last = parsed, parsed
			}
			select {
			case out <- snap:
				lastSum, lastSent = r.sum, time.Now()
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

// read returns the file's content, or the error reading it, and a hash of
// either (so that a new error is a change too). Content that differs from what
// was last sent is read again settle later, until two reads agree; stable is
// false when they never did within settleTries, or ctx ended. The first read
// settles too: an agent starting while the file is written should not attach
// half of its pods.
func (s *FileSource) read(ctx context.Context, settle time.Duration, lastSum [32]byte) (r fileRead, stable bool) {
	r = s.load()
	if r.sum == lastSum {
		return r, true
	}
	for range settleTries {
		select {
		case <-time.After(settle):
		case <-ctx.Done():
			return r, false
		}
		again := s.load()
		if again.sum == r.sum {
			return r, true
		}
		r = again
	}
	return r, false
}

// readBounded reads the regular file at path, of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	// Non-blocking, and the type checked on what was opened: opening a named
	// pipe for reading would otherwise wait for a writer, and a path checked
	// before it is opened can be swapped for a pipe in between.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s (%s): %w", path, fi.Mode().Type(), ErrNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes: %w", path, limit, ErrFileTooLarge)
	}
	return data, nil
}

type fileRead struct {
	data []byte
	err  error
	sum  [32]byte
}

func (s *FileSource) load() fileRead {
	data, err := readBounded(s.Path, MaxFileBytes)
	if err != nil {
		err = fmt.Errorf("read pods file: %w", err)
		// The trailing NUL keeps a file whose content is the error's text from
		// hashing the same as the error.
		return fileRead{err: err, sum: sha256.Sum256(append([]byte(err.Error()), 0))}
	}
	return fileRead{data: data, sum: sha256.Sum256(data)}
}
