package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hoptrace/hoptrace/spans"
)

// head.legs holds what the tracing reads: a request's trace headers and
// sampling override, and the captured fields of requests and responses; a
// response's trace headers are not the tracing's, and nothing else is in it.
func TestHeadLegsHoldsTraceAndCapturedFields(t *testing.T) {
	req := head{capture: newCapture([]string{"x-tenant"})}
	raw := "GET / HTTP/1.1\r\nHost: svc\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
		"Tracestate: a=1\r\nX-Other: 1\r\ntracestate: b=2\r\n" + spans.OverrideHeader + ": 1\r\nX-Tenant:  acme \r\n\r\n"
	if err := req.parseRequest(raw); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"Traceparent":        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"Tracestate":         {"a=1", "b=2"},
		spans.OverrideHeader: {"1"},
		"X-Tenant":           {"acme"},
	}
	if fmt.Sprint(req.legs.h) != fmt.Sprint(want) {
		t.Errorf("request legs %v, want %v", req.legs.h, want)
	}
	if got := req.values(nil, "Tracestate"); !slices.Equal(got, []string{"a=1", "b=2"}) {
		t.Errorf("values(Tracestate) = %q", got)
	}

	res := head{capture: req.capture}
	if err := res.parseResponse("HTTP/1.1 200 OK\r\nTraceparent: x\r\nX-Tenant: r\r\nContent-Length: 0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.legs.h) != fmt.Sprint(map[string][]string{"X-Tenant": {"r"}}) {
		t.Errorf("response legs %v, want only the captured field", res.legs.h)
	}

	// The next message starts from nothing.
	if err := req.parseRequest("GET / HTTP/1.1\r\nHost: svc\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if len(req.legs.h) != 0 || req.value("X-Tenant") != "" || req.count("Host") != 1 {
		t.Errorf("after the next request: legs %v, X-Tenant %q", req.legs.h, req.value("X-Tenant"))
	}
}

// The fields Connection lists are gone for look-ups, for the tracing and for
// the next hop, however many it lists; framing and host are not for it to take.
func TestConnectionDropsListedFields(t *testing.T) {
	listed := []string{"X-A", "traceparent", "x-tenant", "Content-Length", "host"}
	for i := range 40 { // more names than connection's stack buffer holds
		listed = append(listed, fmt.Sprintf("X-N%d", i))
	}
	var b strings.Builder
	b.WriteString("POST /x HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, " + strings.Join(listed[:20], ", ") + "\r\n")
	b.WriteString("Connection: " + strings.Join(listed[20:], ",") + "\r\n")
	b.WriteString("X-A: 1\r\nX-Keep: 1\r\nTraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n")
	b.WriteString("X-A: 2\r\nX-Tenant: acme\r\nX-N39: n\r\nX-Keep: 2\r\nContent-Length: 2\r\n\r\n")
	req := head{capture: newCapture([]string{"X-Tenant"})}
	if err := req.parseRequest(b.String()); err != nil {
		t.Fatal(err)
	}
	fr, err := req.requestFraming()
	if err != nil {
		t.Fatal(err)
	}
	if co := req.connection(); !co.keepAlive {
		t.Error("keep-alive not seen")
	}
	for _, k := range []string{"X-A", "Traceparent", "X-Tenant", "X-N39"} {
		if req.count(k) != 0 || req.value(k) != "" || len(req.values(nil, k)) != 0 {
			t.Errorf("%s is listed in Connection but still looked up", k)
		}
		if _, ok := req.legs.h[k]; ok {
			t.Errorf("%s is listed in Connection but still in the tracing's view", k)
		}
	}
	if got := req.values(nil, "X-Keep"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("X-Keep = %q", got)
	}
	if req.value("Host") != "svc" || fr != (framing{kind: bodyLength, n: 2}) {
		t.Errorf("Host %q, framing %+v: not for Connection to take", req.value("Host"), fr)
	}

	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	writeRequestHead(w, &req, fr, false, "10.0.0.2:80")
	w.Flush()
	sent := out.String()
	for _, k := range []string{"X-A:", "Traceparent:", "X-Tenant:", "X-N39:", "Connection:"} {
		if strings.Contains(sent, k) {
			t.Errorf("forwarded %s: %q", k, sent)
		}
	}
	if !strings.Contains(sent, "X-Keep: 1\r\n") || !strings.Contains(sent, "X-Keep: 2\r\n") || !strings.Contains(sent, "Host: svc\r\n") {
		t.Errorf("lost an end-to-end field: %q", sent)
	}
}

// fieldMap reuses one backing array for its first values and allocates the
// rest one by one, so a message with many trace fields does not grow what a
// connection keeps.
func TestFieldMapBoundsItsBacking(t *testing.T) {
	var m fieldMap
	m.reset()
	for i := range 20 {
		m.add(fmt.Sprintf("K%d", i), fmt.Sprint(i))
		m.add("Same", fmt.Sprint(i))
	}
	if cap(m.vals) != fieldMapValues {
		t.Errorf("backing grew to %d", cap(m.vals))
	}
	for i := range 20 {
		if got := m.h[fmt.Sprintf("K%d", i)]; !slices.Equal(got, []string{fmt.Sprint(i)}) {
			t.Fatalf("K%d = %q", i, got)
		}
	}
	if got := m.h["Same"]; len(got) != 20 || got[0] != "0" || got[19] != "19" {
		t.Errorf("Same = %q", got)
	}
	m.forget()
	if m.h == nil || len(m.h) != 0 || len(m.vals) != 0 {
		t.Errorf("after forget: %v %q", m.h, m.vals)
	}
}
