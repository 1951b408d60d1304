package main

import (
	"bufio"
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/bench"
)

// machineMeta describes this machine and the versions under test.
func machineMeta(cfg config) bench.Meta {
	m := bench.Meta{
		Date:     time.Now().UTC().Format(time.RFC3339),
		CPU:      cpuModel(),
		Cores:    runtime.NumCPU(),
		Command:  cfg.command,
		Versions: map[string]string{},
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	hoptrace := filepath.Join(cfg.binDir, "hoptrace")
	if bi, err := buildinfo.ReadFile(hoptrace); err == nil {
		m.Versions["go"] = bi.GoVersion
	}
	// "hoptrace <version> (go1.26.8, linux/amd64)"; the version is stamped at
	// build time, as `make build` does.
	if out, err := exec.Command(hoptrace, "version").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) > 1 {
			m.Versions["hoptrace"] = f[1]
		}
	}
	for name, bin := range map[string]string{"caddy": cfg.caddy, "fortio": cfg.fortio} {
		if path, err := exec.LookPath(bin); err == nil {
			if bi, err := buildinfo.ReadFile(path); err == nil {
				m.Versions[name] = bi.Main.Version
			}
		}
	}
	// nginx -v prints "nginx version: nginx/1.22.1" on stderr.
	if out, err := exec.Command(cfg.nginx, "-v").CombinedOutput(); err == nil {
		m.Versions["nginx"] = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: nginx/")
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
