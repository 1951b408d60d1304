package main

import (
	"errors"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/hoptrace/hoptrace/cores"
)

func TestCoresFlag(t *testing.T) {
	f := newAgentCmd().Flags().Lookup("cores")
	if f == nil || f.DefValue != "auto" {
		t.Fatalf("--cores default: %v, want auto", f)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ceiling := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(ceiling)

	stop, err := startCores("auto", false, log)
	if err != nil {
		t.Fatal(err)
	}
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("--cores auto starts at %d Ps, want 1", n)
	}
	stop()
	if n := runtime.GOMAXPROCS(0); n != ceiling {
		t.Errorf("after stop: %d Ps, want the ceiling %d back", n, ceiling)
	}

	stop, err = startCores("3", true, log)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Errorf("--cores 3: %d Ps", n)
	}
	runtime.GOMAXPROCS(ceiling)

	// A GOMAXPROCS variable is the user's fixed count: auto leaves it alone,
	// an explicit --cores still wins.
	t.Setenv("GOMAXPROCS", "5")
	runtime.GOMAXPROCS(5)
	stop, err = startCores("auto", false, log)
	if err != nil {
		t.Fatal(err)
	}
	if n := runtime.GOMAXPROCS(0); n != 5 {
		t.Errorf("GOMAXPROCS=5 and --cores left at auto: %d Ps, want 5", n)
	}
	stop()
	stop, err = startCores("2", true, log)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if n := runtime.GOMAXPROCS(0); n != 2 {
		t.Errorf("GOMAXPROCS=5 and --cores 2: %d Ps, want 2", n)
	}

	for _, bad := range []string{"0", "many", ""} {
		if _, err := startCores(bad, true, log); !errors.Is(err, cores.ErrFlag) {
			t.Errorf("--cores %q: err %v, want cores.ErrFlag", bad, err)
		}
	}
}
