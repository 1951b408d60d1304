package main

import (
	"strings"
	"testing"
)

// Three samples: one in tracing, one in the observer under legs.finish
// (untraced work: excluded), one elsewhere.
const script = `hoptrace 123 1000.1: 1 cpu-clock:ppp:
	ffffffff81000000 pvm_irq_enable+0x5 ([kernel.kallsyms])
	91c040 github.com/hoptrace/hoptrace/exporter.appendSpan+0x25 (/bin/hoptrace)
	91c000 github.com/hoptrace/hoptrace/exporter.(*Exporter).run+0x10 (/bin/hoptrace)

hoptrace 123 1000.2: 1 cpu-clock:ppp:
	81c040 github.com/hoptrace/hoptrace/agent.(*podObserver).ObserveRequest+0x21d (/bin/hoptrace)
	81c000 github.com/hoptrace/hoptrace/proxy.(*legs).finish+0x99 (/bin/hoptrace)

hoptrace 123 1000.3: 1 cpu-clock:ppp:
	71c040 internal/runtime/syscall/linux.Syscall6+0x1 (/bin/hoptrace)
`

func TestCount(t *testing.T) {
	total, matched, err := count(strings.NewReader(script), split(defaultInclude), split(defaultExclude))
	if err != nil {
		t.Fatal(err)
	}
	if total != 3 || matched != 1 {
		t.Errorf("total %d, matched %d; want 3 and 1", total, matched)
	}
}
