package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// JaegerSpan is the part of a span in Jaeger's query API the demo prints.
type JaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64  `json:"startTime"` // µs since the epoch
	Duration  int64  `json:"duration"`  // µs
	ProcessID string `json:"processID"`
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

// JaegerTrace is one trace from Jaeger's query API.
type JaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []JaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// Tag returns a span tag as text.
func (s JaegerSpan) Tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// Parent returns the CHILD_OF span id, or "".
func (s JaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// FindTraces asks Jaeger's query API for recent traces of service.
func FindTraces(ctx context.Context, queryURL, service string, limit int) ([]JaegerTrace, error) {
	q := url.Values{"service": {service}, "limit": {fmt.Sprint(limit)}, "lookback": {"1h"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(queryURL, "/")+"/api/traces?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jaeger query: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger query: %s", resp.Status)
	}
	var body struct {
		Data []JaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("jaeger query: %w", err)
	}
	return body.Data, nil
}

// WaitTrace polls Jaeger until a trace of service with at least minSpans spans,
// one of them from the service through, arrives, and returns the newest such trace.
func WaitTrace(ctx context.Context, queryURL, service, through string, minSpans int, timeout time.Duration) (JaegerTrace, error) {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		traces, err := FindTraces(ctx, queryURL, service, 20)
		lastErr = err
		var best *JaegerTrace
		for i := range traces {
			t := &traces[i]
			if len(t.Spans) >= minSpans && t.has(through) && (best == nil || rootStart(*t) > rootStart(*best)) {
				best = t
			}
		}
		if best != nil {
			return *best, nil
		}
		if time.Now().After(deadline) {
			return JaegerTrace{}, fmt.Errorf("no trace of %s with %d spans in Jaeger after %s (last error: %v)", service, minSpans, timeout, lastErr)
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return JaegerTrace{}, ctx.Err()
		}
	}
}

// has reports whether a span of t is from service.
func (t JaegerTrace) has(service string) bool {
	for _, p := range t.Processes {
		if p.ServiceName == service {
			return true
		}
	}
	return false
}

func rootStart(t JaegerTrace) int64 {
	var min int64
	for i, s := range t.Spans {
		if i == 0 || s.StartTime < min {
			min = s.StartTime
		}
	}
	return min
}

// PrintTree writes a trace as an indented tree: service, leg, name, duration.
func PrintTree(w io.Writer, t JaegerTrace) {
	children := map[string][]JaegerSpan{}
	ids := map[string]bool{}
	for _, s := range t.Spans {
		ids[s.SpanID] = true
	}
	var roots []JaegerSpan
	for _, s := range t.Spans {
		if p := s.Parent(); p != "" && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(ss []JaegerSpan) {
		sort.Slice(ss, func(i, j int) bool { return ss[i].StartTime < ss[j].StartTime })
	}
	byStart(roots)
	t0 := rootStart(t)
	var walk func(s JaegerSpan, prefix string, last bool)
	walk = func(s JaegerSpan, prefix string, last bool) {
		branch, next := "├─ ", "│  "
		if last {
			branch, next = "└─ ", "   "
		}
		note := ""
		if s.Tag("hoptrace.context.inferred") == "true" {
			note = "  (context inferred)"
		}
		fmt.Fprintf(w, "%s%s%-8s %-16s %-28s +%7.2fms %8.2fms%s\n", prefix, branch,
			t.Processes[s.ProcessID].ServiceName, s.Tag("hoptrace.leg"), s.OperationName,
			float64(s.StartTime-t0)/1000, float64(s.Duration)/1000, note)
		kids := children[s.SpanID]
		byStart(kids)
		for i, k := range kids {
			walk(k, prefix+next, i == len(kids)-1)
		}
	}
	fmt.Fprintf(w, "trace %s (%d spans)\n", t.TraceID, len(t.Spans))
	fmt.Fprintf(w, "   %-8s %-16s %-28s %9s %10s\n", "SERVICE", "LEG", "SPAN", "START", "DURATION")
	for i, r := range roots {
		walk(r, "", i == len(roots)-1)
	}
}
