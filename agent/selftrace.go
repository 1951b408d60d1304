package agent

import (
	"context"

	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/spans"
)

// selfTracer traces the agent's own operations. A nil *selfTracer is valid and
// does nothing, so call sites need no checks.
type selfTracer struct{}

func newSelfTracer(ctx context.Context, cfg exporter.Config, node string) (*selfTracer, error) {
	return nil, errNotYet
}

func (t *selfTracer) start(ctx context.Context, name string, attrs ...spans.Attr) func(error) {
	return func(error) {}
}

func (t *selfTracer) shutdown(ctx context.Context) {}

var errNotYet = errorString("self-tracing is not built yet")

type errorString string

func (e errorString) Error() string { return string(e) }
