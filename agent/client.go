package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrNoAgent means nothing answers on the admin socket: no agent is running
// there, or this process may not reach it.
var ErrNoAgent = errors.New("no hoptrace agent is running")

// Client talks to a running agent's admin API over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

func (c *Client) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	u := "http://hoptrace" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s (start one with 'hoptrace agent', or point --admin-socket at it)", ErrNoAgent, c.socket)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("admin socket %s: permission denied (run as root)", c.socket)
		}
		return nil, fmt.Errorf("agent at %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("agent %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	resp, err := c.get(ctx, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("agent %s: bad response: %w", path, err)
	}
	return nil
}

// Pods returns the agent's pods.
func (c *Client) Pods(ctx context.Context) (PodsReport, error) {
	var r PodsReport
	return r, c.getJSON(ctx, "/pods", nil, &r)
}

// Flows returns recent and open flows, of one pod if pod is not empty.
func (c *Client) Flows(ctx context.Context, pod string) ([]Flow, error) {
	var r FlowsReport
	q := url.Values{}
	if pod != "" {
		q.Set("pod", pod)
	}
	return r.Flows, c.getJSON(ctx, "/flows", q, &r)
}

// WatchFlows calls fn for each flow as it finishes, until ctx ends or fn errs.
func (c *Client) WatchFlows(ctx context.Context, pod string, fn func(Flow) error) error {
	q := url.Values{"watch": {"true"}}
	if pod != "" {
		q.Set("pod", pod)
	}
	resp, err := c.get(ctx, "/flows", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var f Flow
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return fmt.Errorf("agent flow stream: %w", err)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("agent flow stream: %w", err)
	}
	return errors.New("agent closed the flow stream")
}

// Ready returns nil if the agent is ready, or why not.
func (c *Client) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.get(ctx, "/readyz", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Metrics copies the agent's Prometheus metrics, in the text format, to w.
func (c *Client) Metrics(ctx context.Context, w io.Writer) error {
	resp, err := c.get(ctx, "/metrics", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("agent /metrics: %w", err)
	}
	return nil
}
