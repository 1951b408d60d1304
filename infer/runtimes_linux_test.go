package infer_test

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/internal/testenv"
)

// runtimeApp is one runtime model of an app that forwards no headers.
type runtimeApp struct {
	name string
	// threadPerRequest: each request is read, served and answered by one
	// thread, so links are expected (recall >= 99%). Otherwise only
	// precision counts, and Go must not be linked at all.
	threadPerRequest bool
	neverLinked      bool
	start            func(t *testing.T, m *mesh)
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testenv.Unavailable(t, name+" not installed")
	}
	return p
}

var runtimeApps = []runtimeApp{
	{name: "Python ThreadingHTTPServer", threadPerRequest: true, start: func(t *testing.T, m *mesh) {
		m.startFront(t, "threaded_front.py", "0.01")
	}},
	{name: "Java thread pool (com.sun.net.httpserver)", threadPerRequest: true, start: func(t *testing.T, m *mesh) {
		m.startFrontCmd(t, lookPath(t, "java"), []string{filepath.Join("testdata", "JavaFront.java")}, "0.01")
	}},
	{name: "Node.js (event loop)", start: func(t *testing.T, m *mesh) {
		m.startFrontCmd(t, lookPath(t, "node"), []string{filepath.Join("testdata", "node_front.js")}, "0.01")
	}},
	{name: "Go net/http", neverLinked: true, start: func(t *testing.T, m *mesh) {
		bin := filepath.Join(t.TempDir(), "gofront")
		if out, err := exec.Command("go", "build", "-o", bin, "./testdata/gofront").CombinedOutput(); err != nil {
			t.Fatalf("build gofront: %v\n%s", err, out)
		}
		m.startFrontCmd(t, bin, nil, "0.01")
	}},
}

// Shown: the ground-truth benchmark of docs/benchmarks.md. Apps in four
// runtime models forward no headers; under 1, 8 and 64 concurrent requests
// with random delays, no link is ever wrong, thread-per-request apps are
// linked at >= 99%, and Go is never linked. The rows it logs are the table;
// the kernel cost is the programs' mean time per run times their runs per
// request while the load ran (every socket read and TCP write on the
// machine, other tests' too, so the runs are an upper bound).
func TestGroundTruthRuntimes(t *testing.T) {
	testenv.RequirePrivileged(t)
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		t.Fatalf("enable BPF run-time statistics: %v", err)
	}
	defer stats.Close()
	var rows []string
	for _, app := range runtimeApps {
		t.Run(strings.Fields(app.name)[0], func(t *testing.T) {
			m := newMesh(t, true)
			app.start(t, m)
			for _, c := range []struct{ conc, total int }{{1, 50}, {8, 200}, {64, 640}} {
				before := m.inferrer.Stats()
				runs0, time0 := m.inferrer.KernelTime()
				ids := m.load(t, fmt.Sprintf("c%d", c.conc), c.total, c.conc, 1)
				runs1, time1 := m.inferrer.KernelTime()
				v := m.grade(t, ids, 1)
				after := m.inferrer.Stats()
				right := v.linked - v.wrong
				precision := "—"
				if v.linked > 0 {
					precision = fmt.Sprintf("%.1f%%", 100*float64(right)/float64(v.linked))
				}
				recall := float64(right) / float64(v.calls)
				var perRun time.Duration
				if runs1 > runs0 {
					perRun = (time1 - time0) / time.Duration(runs1-runs0)
				}
				row := fmt.Sprintf("| %s | %d | %d | %d | %d | %s | %.1f%% | %d ambiguous, %d no-data | %d ns × %d |",
					app.name, c.conc, v.calls, v.linked, v.wrong, precision, 100*recall,
					after.Ambiguous-before.Ambiguous, after.NoData-before.NoData,
					perRun.Nanoseconds(), (runs1-runs0)/uint64(c.total))
				t.Log(row)
				rows = append(rows, row)
				if v.wrong > 0 {
					t.Errorf("c%d: %d wrong links: %v", c.conc, v.wrong, v.wrongs)
				}
				if app.threadPerRequest && recall < 0.99 {
					t.Errorf("c%d: recall %.1f%%, want >= 99%% for thread-per-request", c.conc, 100*recall)
				}
				if app.neverLinked && v.linked > 0 {
					t.Errorf("c%d: %d links, want none", c.conc, v.linked)
				}
				if got := (after.Linked - before.Linked) + (after.Ambiguous - before.Ambiguous) + (after.NoData - before.NoData); got != uint64(v.calls) {
					t.Errorf("c%d: counters account for %d of %d calls", c.conc, got, v.calls)
				}
			}
		})
	}
	t.Log("ground truth:\n" + strings.Join(rows, "\n"))
}
