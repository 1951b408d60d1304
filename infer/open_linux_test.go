package infer

import (
	"testing"

	"github.com/hoptrace/hoptrace/bpf"
	"github.com/hoptrace/hoptrace/internal/testenv"
)

// The verdicts and counters the Go side decodes are the ones infer.c sets.
func TestKernelConstantsAgree(t *testing.T) {
	for _, c := range []struct{ got, want uint32 }{
		{verdictLinked, uint32(bpf.InferVerdictVERDICT_LINKED)},
		{verdictNoThread, uint32(bpf.InferVerdictVERDICT_NO_THREAD)},
		{verdictAnswered, uint32(bpf.InferVerdictVERDICT_ANSWERED)},
		{verdictAmbiguous, uint32(bpf.InferVerdictVERDICT_AMBIGUOUS)},
		{0, uint32(bpf.InferCounterCNT_REQUEST_READ)},
		{1, uint32(bpf.InferCounterCNT_MULTIPLEXED)},
		{2, uint32(bpf.InferCounterCNT_WRITE_RECORDED)},
	} {
		if c.got != c.want {
			t.Errorf("Go %d, C %d", c.got, c.want)
		}
	}
}

// Shown: the programs load and attach on this kernel, and Close detaches them.
func TestOpenAttachesOnThisKernel(t *testing.T) {
	testenv.RequirePrivileged(t)
	i, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := i.Close(); err != nil {
		t.Fatal(err)
	}
}
