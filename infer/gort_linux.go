package infer

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// goPrograms remembers which processes run Go executables. A Go program's
// goroutines move between OS threads, so the request a thread last read says
// nothing about the goroutine that writes on it now: its hops are never linked.
type goPrograms struct {
	mu    sync.Mutex
	procs map[uint32]goProc
	proc  string // /proc
}

type goProc struct {
	dev, ino uint64 // the executable, so a reused pid is noticed
	isGo     bool
}

func newGoPrograms() *goPrograms {
	return &goPrograms{procs: map[uint32]goProc{}, proc: "/proc"}
}

// maxGoProcs bounds the cache; beyond it, it starts afresh.
const maxGoProcs = 4096

// is reports whether process pid runs a Go executable. A process it cannot
// inspect counts as Go: unknown must not be linked.
func (g *goPrograms) is(pid uint32) bool {
	exe := fmt.Sprintf("%s/%d/exe", g.proc, pid)
	var st syscall.Stat_t
	if err := syscall.Stat(exe, &st); err != nil {
		return true
	}
	g.mu.Lock()
	p, ok := g.procs[pid]
	g.mu.Unlock()
	if ok && p.dev == uint64(st.Dev) && p.ino == st.Ino {
		return p.isGo
	}
	p = goProc{dev: uint64(st.Dev), ino: st.Ino, isGo: isGoExecutable(exe)}
	g.mu.Lock()
	if len(g.procs) >= maxGoProcs {
		clear(g.procs)
	}
	g.procs[pid] = p
	g.mu.Unlock()
	return p.isGo
}

// isGoExecutable reports whether the file is a Go program: it carries Go build
// information. A file that cannot be opened counts as Go.
func isGoExecutable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	_, err = buildinfo.Read(f)
	return err == nil
}
