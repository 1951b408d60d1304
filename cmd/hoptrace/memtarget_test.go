package main

import (
	"errors"
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/hoptrace/hoptrace/memlimit"
)

func TestMemoryTargetFlag(t *testing.T) {
	f := newAgentCmd().Flags().Lookup("memory-target")
	if f == nil || f.DefValue != "30MiB" {
		t.Fatalf("--memory-target default: %v, want 30MiB", f)
	}
	if n, err := memlimit.ParseSize(f.DefValue); err != nil || n != memlimit.DefaultTarget {
		t.Errorf("default %q = %d, %v; want memlimit.DefaultTarget", f.DefValue, n, err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	before := debug.SetMemoryLimit(-1)

	stop, err := startMemoryTarget("640MiB", log)
	if err != nil {
		t.Fatal(err)
	}
	if l := debug.SetMemoryLimit(-1); l != 640<<20 {
		t.Errorf("--memory-target 640MiB: runtime memory limit %d", l)
	}
	stop()
	if l := debug.SetMemoryLimit(-1); l != before {
		t.Errorf("after stop: limit %d, want %d back", l, before)
	}

	for _, off := range []string{"off", "0"} {
		stop, err := startMemoryTarget(off, log)
		if err != nil {
			t.Fatal(err)
		}
		if l := debug.SetMemoryLimit(-1); l != before {
			t.Errorf("--memory-target %s changed the limit to %d", off, l)
		}
		stop()
	}
	if _, err := startMemoryTarget("30MB", log); !errors.Is(err, memlimit.ErrSize) {
		t.Errorf("--memory-target 30MB: err %v, want ErrSize", err)
	}
}
