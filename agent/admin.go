package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// PodInfo is one pod as /pods reports it.
type PodInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	Service   string    `json:"service"`
	State     string    `json:"state"` // attached or failed
	Error     string    `json:"error,omitempty"`
	Netns     string    `json:"netns"`
	Cgroup    string    `json:"cgroup"`
	IPs       []string  `json:"ips,omitempty"`
	Since     time.Time `json:"since"`
}

// PodsReport is the /pods response.
type PodsReport struct {
	Node     string    `json:"node,omitempty"`
	Pods     []PodInfo `json:"pods"`
	Problems []string  `json:"problems,omitempty"` // source problems: pods that could not be resolved
}

// FlowsReport is the /flows response.
type FlowsReport struct {
	Flows []Flow `json:"flows"`
}

// state is what the admin API reads from the running agent.
type state interface {
	ready() error
	podsReport() PodsReport
	openFlows() []Flow
}

// adminPrivate lists the admin paths that show what pods do (every pod, every
// connection). They are served on the root-only unix socket; the TCP address
// serves them only with Config.AdminAddrFull, because anything on the node that
// reaches the node's loopback (any hostNetwork pod) could read them there.
var adminPrivate = []string{"/pods", "/flows"}

// newAdminHandler serves the admin API. With full false it serves only what
// kubelet probes and Prometheus need (/healthz, /readyz, /metrics) and answers
// the private paths with 404 and where to find them.
func newAdminHandler(st state, m *metrics, flows *flowTable, full bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := st.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	if !full {
		for _, p := range adminPrivate {
			mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, p+" is served on the admin socket only (hoptrace "+p[1:]+
					"); start the agent with --admin-addr-full to serve it on --admin-addr", http.StatusNotFound)
			})
		}
		return mux
	}
	mux.HandleFunc("GET /pods", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, st.podsReport())
	})
	mux.HandleFunc("GET /flows", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "true" {
			streamFlows(w, r, flows)
			return
		}
		all := append(flows.recent(), st.openFlows()...)
		if pod := r.URL.Query().Get("pod"); pod != "" {
			all = filterFlows(all, pod)
		}
		writeJSON(w, FlowsReport{Flows: all})
	})
	return mux
}

func filterFlows(fs []Flow, pod string) []Flow {
	var out []Flow
	for _, f := range fs {
		if matchesPod(f.Pod, pod) {
			out = append(out, f)
		}
	}
	return out
}

// matchesPod accepts "namespace/name" or a bare name.
func matchesPod(full, want string) bool {
	if full == want {
		return true
	}
	_, name, ok := cutLast(full, '/')
	return ok && name == want
}

func cutLast(s string, sep byte) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// streamFlows writes finished flows as newline-delimited JSON until the client leaves.
func streamFlows(w http.ResponseWriter, r *http.Request, flows *flowTable) {
	ch, cancel := flows.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	pod := r.URL.Query().Get("pod")
	enc := json.NewEncoder(w)
	for {
		select {
		case f := <-ch:
			if pod != "" && !matchesPod(f.Pod, pod) {
				continue
			}
			if enc.Encode(f) != nil || rc.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// listenAdmin opens the admin unix socket, replacing a stale one left by a
// crashed agent but refusing to steal one a live agent still answers on.
func listenAdmin(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, ErrAgentRunning)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale admin socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	// Root only: the socket shows every pod's connections.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}

// ErrAgentRunning means another agent already answers on the admin socket.
var ErrAgentRunning = errors.New("another hoptrace agent is running")
