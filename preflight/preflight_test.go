package preflight

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	var b strings.Builder
	ok := Report(&b, []Result{
		{Name: "a", Status: OK, Detail: "fine"},
		{Name: "b", Status: Warning, Detail: "meh", Fix: "do x"},
	})
	if !ok {
		t.Error("warnings must not fail the check")
	}
	want := "ok       a: fine\nwarn     b: meh (fix: do x)\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	if Report(&b, []Result{{Name: "c", Status: Missing}}) {
		t.Error("a missing item must fail the check")
	}
}

func TestParseRelease(t *testing.T) {
	for _, tt := range []struct {
		in         string
		maj, minor int
	}{
		{"6.18.44-fc-v595", 6, 18},
		{"5.15.0-91-generic", 5, 15},
		{"4.19", 4, 19},
		{"6.1rc3", 6, 1},
		{"garbage", 0, 0},
	} {
		if maj, min := parseRelease(tt.in); maj != tt.maj || min != tt.minor {
			t.Errorf("parseRelease(%q) = %d.%d, want %d.%d", tt.in, maj, min, tt.maj, tt.minor)
		}
	}
}
