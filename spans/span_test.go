package spans

import "testing"

type nameBuilder struct{ calls int }

func (b *nameBuilder) Build(s, into *Span) {
	b.calls++
	into.Name = "built"
	into.Attrs = append(into.Attrs, String("k", "v"))
	into.Resource = s.Resource
}

// Build hands back a span that is all there as it is, and builds a deferred
// one into the scratch span, reusing its slices and leaving nothing of what
// was built there before.
func TestBuild(t *testing.T) {
	eager := &Span{Name: "eager"}
	var scratch Span
	if got := Build(eager, &scratch); got != eager {
		t.Errorf("Build of a span that is not deferred: %p, want the span itself", got)
	}
	res := &Resource{}
	b := &nameBuilder{}
	d := &Span{Resource: res}
	d.SetBuilder(b)
	scratch = Span{Name: "stale", StatusMessage: "stale", Attrs: make([]Attr, 3, 8), Events: make([]Event, 2, 4)}
	room := &scratch.Attrs[:1][0]
	got := Build(d, &scratch)
	if got != &scratch || b.calls != 1 {
		t.Fatalf("Build of a deferred span: %p after %d builds, want the scratch span after 1", got, b.calls)
	}
	if got.Name != "built" || got.StatusMessage != "" || len(got.Attrs) != 1 || len(got.Events) != 0 || got.Resource != res {
		t.Errorf("built span: %+v", got)
	}
	if &got.Attrs[0] != room {
		t.Error("the scratch span's attributes were not reused")
	}
	if d.Name != "" || len(d.Attrs) != 0 {
		t.Errorf("Build changed the deferred span itself: %+v", d)
	}
}
