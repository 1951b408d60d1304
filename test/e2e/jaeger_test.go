//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/internal/jaegertest"
)

// jaeger queries the in-cluster Jaeger through `kubectl port-forward`, which
// works the same from a kind host and from a local node.
type jaeger struct {
	base   string
	client *http.Client
}

var forwarding = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)

// portForwardJaeger starts a port-forward to svc/jaeger's query port and stops
// it (by its PID) when the test ends.
func (e *env) portForwardJaeger(t *testing.T) *jaeger {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, e.kubectl, "port-forward", "-n", tracingNS, "--address", "127.0.0.1", "svc/jaeger", ":16686")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubectl port-forward: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := forwarding.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case port <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case p := <-port:
		return &jaeger{base: "http://127.0.0.1:" + p, client: &http.Client{Timeout: 20 * time.Second}}
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl port-forward to svc/jaeger: no port after 30s")
	}
	return nil
}

// traces returns recent traces with a span of service (newest first, as Jaeger
// orders them), optionally only those with a span carrying tag=value.
func (j *jaeger) traces(service string, limit int, tags map[string]string) ([]jaegertest.Trace, error) {
	q := url.Values{
		"service":  {service},
		"limit":    {strconv.Itoa(limit)},
		"lookback": {"1h"},
		"end":      {strconv.FormatInt(time.Now().Add(time.Minute).UnixMicro(), 10)},
		"start":    {strconv.FormatInt(time.Now().Add(-time.Hour).UnixMicro(), 10)},
	}
	if len(tags) > 0 {
		b, _ := json.Marshal(tags)
		q.Set("tags", string(b))
	}
	var body struct {
		Data   []jaegertest.Trace `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	if err := j.get("/api/traces?"+q.Encode(), &body); err != nil {
		return nil, err
	}
	if len(body.Errors) > 0 {
		return nil, fmt.Errorf("jaeger: %s", body.Errors[0].Msg)
	}
	return body.Data, nil
}

func (j *jaeger) services() ([]string, error) {
	var body struct {
		Data []string `json:"data"`
	}
	err := j.get("/api/services", &body)
	return body.Data, err
}

func (j *jaeger) get(path string, out any) error {
	resp, err := j.client.Get(j.base + path)
	if err != nil {
		return fmt.Errorf("jaeger query: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jaeger query %s: %s", strings.SplitN(path, "?", 2)[0], resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("jaeger query: decode: %w", err)
	}
	return nil
}

// spanService is the service.name of a span's resource.
func spanService(tr jaegertest.Trace, s jaegertest.Span) string {
	return tr.Process(s).ServiceName
}

func tag(s jaegertest.Span, key string) string {
	v, _ := s.Tag(key)
	return v
}
