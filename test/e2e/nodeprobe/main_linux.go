// Command nodeprobe is the e2e suite's helper inside the cluster, so the same
// checks run on a local node and on kind.
//
//	nodeprobe bpf [-pin-dir /sys/fs/bpf/hoptrace] [-cgroup-root /host/cgroup2]
//	nodeprobe caps -container-id ID
//
// caps reports the capability sets, seccomp mode and no_new_privs flag of
// every process of one container (found by its ID in /proc/<pid>/cgroup), as
// the kernel applies them: the suite checks the agent's least privilege there,
// not only in the Pod spec.
//
// reports what hoptrace has on the node: its BPF pins, and every BPF program
// named hoptrace_* attached to a pod's cgroup or a pod's network namespace, as
// one JSON object on stdout. The suite runs it as a privileged hostPID pod after
// `helm uninstall` and expects an empty report. Programs are attributed through
// what they are attached to, not by name alone: other hoptrace agents or tests
// on the same kernel may have programs of the same names loaded elsewhere.
// (Holding apps until capture is `hoptrace await-capture`, the product's own.)
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Report is nodeprobe's output.
type Report struct {
	PinDir   string     `json:"pin_dir"`
	Pins     []string   `json:"pins"`     // paths under PinDir
	Attached []Attached `json:"attached"` // hoptrace programs on pods
	Scanned  Scanned    `json:"scanned"`
	Errors   []string   `json:"errors,omitempty"`
}

// Attached is one hoptrace program attached to a pod's cgroup or netns.
type Attached struct {
	Target  string `json:"target"` // cgroup path or "netns:<inode> (pid N)"
	Attach  string `json:"attach"`
	Program string `json:"program"`
	ProgID  uint32 `json:"prog_id"`
	LinkID  uint32 `json:"link_id,omitempty"`
}

// Scanned says how much was looked at, so an empty report from a probe that
// saw nothing (wrong cgroup root, no hostPID) is not mistaken for a clean node.
type Scanned struct {
	Cgroups int `json:"cgroups"`
	Netns   int `json:"netns"`
}

var cgroupAttach = map[string]ebpf.AttachType{
	"connect4": ebpf.AttachCGroupInet4Connect,
	"connect6": ebpf.AttachCGroupInet6Connect,
	"sockops":  ebpf.AttachCGroupSockOps,
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nodeprobe bpf|caps [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "bpf":
		probeBPF(os.Args[2:])
	case "caps":
		probeCaps(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "nodeprobe: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func probeBPF(args []string) {
	fs := flag.NewFlagSet("bpf", flag.ExitOnError)
	pinDir := fs.String("pin-dir", "/sys/fs/bpf/hoptrace", "hoptrace's pin directory")
	cgroupRoot := fs.String("cgroup-root", "/host/cgroup2", "the host's cgroup v2 mount")
	procRoot := fs.String("proc-root", "/proc", "the host's procfs (run with hostPID)")
	fs.Parse(args)

	r := Report{PinDir: *pinDir, Pins: []string{}, Attached: []Attached{}}
	r.pins(*pinDir)
	r.cgroups(*cgroupRoot)
	r.netns(*procRoot)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, "nodeprobe:", err)
		os.Exit(1)
	}
}

func (r *Report) fail(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
}

func (r *Report) pins(dir string) {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			r.Pins = append(r.Pins, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.fail("walk %s: %v", dir, err)
	}
}

// cgroups queries every cgroup under the kubelet's kubepods directories (pods
// and their containers) for hoptrace programs.
func (r *Report) cgroups(root string) {
	var kubepods []string
	if _, err := os.ReadDir(root); err != nil {
		r.fail("read cgroup root: %v", err)
		return
	}
	// kubepods (cgroupfs driver), kubepods.slice (systemd), and under a
	// --cgroup-root slice such as kind's kubelet.slice.
	var find func(dir string, depth int)
	find = func(dir string, depth int) {
		es, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range es {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if e.Name() == "kubepods" || strings.HasSuffix(e.Name(), "kubepods.slice") {
				kubepods = append(kubepods, p)
			} else if depth < 4 {
				find(p, depth+1)
			}
		}
	}
	find(root, 0)
	for _, kp := range kubepods {
		_ = filepath.WalkDir(kp, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			r.Scanned.Cgroups++
			r.queryPath(p, p, cgroupAttach)
			return nil
		})
	}
}

// netns queries the network namespace of every process in a kubepods cgroup.
func (r *Report) netns(procRoot string) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		r.fail("read %s: %v", procRoot, err)
		return
	}
	seen := map[uint64]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), "kubepods") {
			continue
		}
		nsPath := filepath.Join(procRoot, e.Name(), "ns", "net")
		var st syscall.Stat_t
		if err := syscall.Stat(nsPath, &st); err != nil || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		r.Scanned.Netns++
		r.queryPath(nsPath, fmt.Sprintf("netns:%d (pid %d)", st.Ino, pid), map[string]ebpf.AttachType{"sk_lookup": ebpf.AttachSkLookup})
	}
}

func (r *Report) queryPath(path, target string, types map[string]ebpf.AttachType) {
	f, err := os.Open(path)
	if err != nil {
		return // gone meanwhile
	}
	defer f.Close()
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: types[name]})
		if err != nil {
			r.fail("query %s %s: %v", name, target, err)
			continue
		}
		for _, ap := range res.Programs {
			prog, err := ebpf.NewProgramFromID(ap.ID)
			if err != nil {
				continue // unloaded meanwhile
			}
			info, err := prog.Info()
			prog.Close()
			if err != nil || !strings.HasPrefix(info.Name, "hoptrace_") {
				continue
			}
			a := Attached{Target: target, Attach: name, Program: info.Name, ProgID: uint32(ap.ID)}
			if id, ok := ap.LinkID(); ok {
				a.LinkID = uint32(id)
			}
			r.Attached = append(r.Attached, a)
		}
	}
}

// CapsReport is the output of nodeprobe caps.
type CapsReport struct {
	ContainerID string    `json:"container_id"`
	Processes   []Process `json:"processes"`
	Errors      []string  `json:"errors,omitempty"`
}

// Process is one process's privileges, from /proc/<pid>/status.
type Process struct {
	PID        int    `json:"pid"`
	Comm       string `json:"comm"`
	CapInh     string `json:"cap_inh"`
	CapPrm     string `json:"cap_prm"`
	CapEff     string `json:"cap_eff"`
	CapBnd     string `json:"cap_bnd"`
	CapAmb     string `json:"cap_amb"`
	Seccomp    string `json:"seccomp"` // 0 off, 1 strict, 2 filter
	NoNewPrivs string `json:"no_new_privs"`
}

func probeCaps(args []string) {
	fs := flag.NewFlagSet("caps", flag.ExitOnError)
	id := fs.String("container-id", "", "the container's ID (without the runtime:// prefix)")
	procRoot := fs.String("proc-root", "/proc", "the host's procfs (run with hostPID)")
	fs.Parse(args)
	if len(*id) < 12 {
		fmt.Fprintln(os.Stderr, "nodeprobe caps: -container-id is required (at least 12 characters)")
		os.Exit(2)
	}
	r := CapsReport{ContainerID: *id, Processes: []Process{}}
	entries, err := os.ReadDir(*procRoot)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join(*procRoot, e.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), *id) {
			continue
		}
		status, err := os.ReadFile(filepath.Join(*procRoot, e.Name(), "status"))
		if err != nil {
			continue // exited meanwhile
		}
		p := Process{PID: pid}
		for _, line := range strings.Split(string(status), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch k {
			case "Name":
				p.Comm = v
			case "CapInh":
				p.CapInh = v
			case "CapPrm":
				p.CapPrm = v
			case "CapEff":
				p.CapEff = v
			case "CapBnd":
				p.CapBnd = v
			case "CapAmb":
				p.CapAmb = v
			case "Seccomp":
				p.Seccomp = v
			case "NoNewPrivs":
				p.NoNewPrivs = v
			}
		}
		r.Processes = append(r.Processes, p)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, "nodeprobe:", err)
		os.Exit(1)
	}
}
