package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPUSeconds returns utime+stime of a process, all its threads included.
func CPUSeconds(pid int) (float64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// Fields after the command name: state is [0], utime [11], stime [12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("pid %d: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// statFields returns the fields of /proc/<pid>/stat after "(comm)", which may
// itself hold spaces and parentheses.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("read stat: %w", err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("pid %d: short stat", pid)
	}
	return f, nil
}

// PeakRSSMB returns VmHWM, the process's peak resident set, in MiB.
func PeakRSSMB(pid int) (float64, error) {
	st, err := ReadStatus(pid)
	if err != nil {
		return 0, err
	}
	if st.PeakRSSMB == 0 {
		return 0, fmt.Errorf("pid %d: no VmHWM", pid)
	}
	return st.PeakRSSMB, nil
}

// Status is what /proc/<pid>/status says about a process's memory and threads.
type Status struct {
	PeakRSSMB float64 // VmHWM
	AnonMB    float64 // RssAnon: heap, stacks; what the process itself allocated
	FileMB    float64 // RssFile: mapped files, mostly its own binary (shared page cache)
	Threads   int
}

// ReadStatus reads /proc/<pid>/status.
func ReadStatus(pid int) (Status, error) {
	var st Status
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("read status: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSuffix(strings.TrimSpace(v), " kB")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmHWM":
			st.PeakRSSMB = float64(n) / 1024
		case "RssAnon":
			st.AnonMB = float64(n) / 1024
		case "RssFile":
			st.FileMB = float64(n) / 1024
		case "Threads":
			st.Threads = int(n)
		}
	}
	return st, sc.Err()
}

// ResetPeakRSS sets VmHWM back to the current RSS, so the next PeakRSSMB is the
// peak of what happens from now on (Linux 4.0+).
func ResetPeakRSS(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak rss of %d: %w", pid, err)
	}
	return nil
}

// WithDescendants returns pid and every process below it: nginx's workers, say.
func WithDescendants(pid int) []int {
	children := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, err := statFields(p)
		if err != nil {
			continue // exited meanwhile
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// LoadAvg1 returns the 1-minute load average.
func LoadAvg1() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, fmt.Errorf("read loadavg: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("empty /proc/loadavg")
	}
	return strconv.ParseFloat(f[0], 64)
}
