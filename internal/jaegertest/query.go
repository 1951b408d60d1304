package jaegertest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrTraceNotFound is returned by Trace for an id Jaeger does not have.
var ErrTraceNotFound = errors.New("trace not found")

// Trace is a trace as Jaeger's /api/traces returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
	Warnings  []string           `json:"warnings"`
}

// Span is one span of a Trace. Times are microseconds since the epoch.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	Flags         uint32      `json:"flags"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
	Warnings      []string    `json:"warnings"`
}

// Reference links a span to another (CHILD_OF is the parent).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag. Type is "string", "bool", "int64", "float64" or "binary";
// numbers decode as json.Number.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Log is a span event: its name is the "event" field.
type Log struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []KeyValue `json:"fields"`
}

// Process is the resource of a span: service.name becomes ServiceName, the other
// resource attributes its tags.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// ParentID returns the span id of the CHILD_OF reference, or "" for a root span.
func (s Span) ParentID() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Tag returns the value of a tag, formatted as a string, and whether it exists.
func (s Span) Tag(key string) (string, bool) { return lookup(s.Tags, key) }

// Kind returns the span kind Jaeger derived from OTLP ("server", "client", ...).
func (s Span) Kind() string {
	k, _ := s.Tag("span.kind")
	return k
}

// Event returns the first log whose event field is name.
func (s Span) Event(name string) (Log, bool) {
	for _, l := range s.Logs {
		if v, _ := lookup(l.Fields, "event"); v == name {
			return l, true
		}
	}
	return Log{}, false
}

// Field returns the value of a log field as a string.
func (l Log) Field(key string) (string, bool) { return lookup(l.Fields, key) }

// Tag returns the value of a process (resource) tag as a string.
func (p Process) Tag(key string) (string, bool) { return lookup(p.Tags, key) }

// Span returns the span with the given id.
func (t Trace) Span(id string) (Span, bool) {
	for _, s := range t.Spans {
		if s.SpanID == id {
			return s, true
		}
	}
	return Span{}, false
}

// Process returns the process (resource) of s.
func (t Trace) Process(s Span) Process { return t.Processes[s.ProcessID] }

func lookup(kvs []KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value), true
		}
	}
	return "", false
}

type response[T any] struct {
	Data   T `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

func (j *Jaeger) get(path string, q url.Values, out any) error {
	u := j.QueryURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, err := j.client.Get(u)
	if err != nil {
		return fmt.Errorf("jaeger query: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("jaeger query %s: %w", path, ErrTraceNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jaeger query %s: %s", path, resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber() // int64 tags must not round through float64
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("jaeger query %s: decode: %w", path, err)
	}
	return nil
}

// Services lists the service names Jaeger has spans for.
func (j *Jaeger) Services() ([]string, error) {
	var r response[[]string]
	if err := j.get("/api/services", nil, &r); err != nil {
		return nil, err
	}
	return r.Data, nil
}

// Traces returns every trace (up to 100,000) with a span of service from the last
// 24 hours.
func (j *Jaeger) Traces(service string) ([]Trace, error) {
	now := time.Now()
	q := url.Values{
		"service": {service},
		"limit":   {"100000"},
		"start":   {strconv.FormatInt(now.Add(-24*time.Hour).UnixMicro(), 10)},
		"end":     {strconv.FormatInt(now.Add(time.Hour).UnixMicro(), 10)},
	}
	var r response[[]Trace]
	if err := j.get("/api/traces", q, &r); err != nil {
		return nil, err
	}
	if len(r.Errors) > 0 {
		return r.Data, fmt.Errorf("jaeger query /api/traces: %s", r.Errors[0].Msg)
	}
	return r.Data, nil
}

// Trace returns one trace by its hex id, or an error wrapping ErrTraceNotFound.
func (j *Jaeger) Trace(id string) (Trace, error) {
	var r response[[]Trace]
	if err := j.get("/api/traces/"+url.PathEscape(id), nil, &r); err != nil {
		return Trace{}, err
	}
	if len(r.Data) == 0 {
		return Trace{}, fmt.Errorf("trace %s: %w", id, ErrTraceNotFound)
	}
	return r.Data[0], nil
}

// CountSpans returns the number of spans in traces.
func CountSpans(traces []Trace) int {
	n := 0
	for _, t := range traces {
		n += len(t.Spans)
	}
	return n
}

// WaitForSpans polls until Jaeger holds at least n spans of service, and returns
// its traces; after timeout it returns what it has with an error.
func (j *Jaeger) WaitForSpans(service string, n int, timeout time.Duration) ([]Trace, error) {
	deadline := time.Now().Add(timeout)
	for {
		traces, err := j.Traces(service)
		got := CountSpans(traces)
		if err == nil && got >= n {
			return traces, nil
		}
		if time.Now().After(deadline) {
			return traces, fmt.Errorf("jaeger has %d spans of %s after %v, want %d (last error: %v)", got, service, timeout, n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// AcceptedSpans returns how many spans Jaeger's OTLP receiver has accepted since
// the process started, from its own telemetry. Unlike the query API, which
// drops identical duplicate spans, it counts every delivery.
func (j *Jaeger) AcceptedSpans() (int64, error) {
	resp, err := j.client.Get(j.metrics)
	if err != nil {
		return 0, fmt.Errorf("jaeger metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("jaeger metrics: %s", resp.Status)
	}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "otelcol_receiver_accepted_spans") || !strings.Contains(line, `receiver="otlp"`) {
			continue
		}
		// name{labels} value [timestamp]
		rest := line[strings.LastIndexByte(line, '}')+1:]
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("jaeger metrics: %q: %w", line, err)
		}
		total += v
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("jaeger metrics: %w", err)
	}
	return int64(total), nil
}
