package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"

	"github.com/hoptrace/hoptrace/cores"
)

// startCores applies --cores: "auto" steers GOMAXPROCS between 1 and what the
// runtime chose (the CPUs the agent may use: affinity, the cgroup's CPU limit),
// a count fixes it. The returned func stops the steering. A GOMAXPROCS
// variable is a fixed count too, unless --cores was given explicitly.
func startCores(flag string, explicit bool, log *slog.Logger) (stop func(), err error) {
	n, err := cores.ParseFlag(flag)
	if err != nil {
		return nil, fmt.Errorf("--cores: %w", err)
	}
	if env := os.Getenv("GOMAXPROCS"); env != "" && !explicit {
		log.Debug("cores: GOMAXPROCS is set, not steering it", "GOMAXPROCS", runtime.GOMAXPROCS(0))
		return func() {}, nil
	}
	if n > 0 {
		cores.Fixed(n)
		log.Debug("cores: fixed", "cores", n)
		return func() {}, nil
	}
	c := cores.Auto(runtime.GOMAXPROCS(0))
	log.Debug("cores: steered by load", "max", c.Stats().Max)
	return c.Stop, nil
}
