package agent

import (
	"testing"
	"time"
)

func TestFlowTableKeepsTheNewest(t *testing.T) {
	ft := newFlowTable(3)
	for i := range 5 {
		ft.add(Flow{Requests: int64(i)})
	}
	got := ft.recent()
	if len(got) != 3 || got[0].Requests != 2 || got[2].Requests != 4 {
		t.Fatalf("recent = %+v, want requests 2,3,4", got)
	}
}

func TestFlowTableWatchersNeverBlock(t *testing.T) {
	ft := newFlowTable(8)
	ch, cancel := ft.subscribe()
	defer cancel()
	done := make(chan struct{})
	go func() {
		for range 1000 { // far more than the watcher's buffer
			ft.add(Flow{})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("add blocked on a slow watcher")
	}
	if len(ch) == 0 || ft.missed.Load() == 0 {
		t.Errorf("buffered %d, missed %d: want some of each", len(ch), ft.missed.Load())
	}
}

func TestMatchesPod(t *testing.T) {
	for _, tt := range []struct {
		full, want string
		ok         bool
	}{
		{"demo/hello", "demo/hello", true},
		{"demo/hello", "hello", true},
		{"demo/hello", "ello", false},
		{"demo/hello", "demo", false},
	} {
		if got := matchesPod(tt.full, tt.want); got != tt.ok {
			t.Errorf("matchesPod(%q, %q) = %v", tt.full, tt.want, got)
		}
	}
}
