package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoptrace/hoptrace/cgroup2"
	"github.com/hoptrace/hoptrace/connid"
	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/infer"
	"github.com/hoptrace/hoptrace/pods"
	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/redirect"
	"github.com/hoptrace/hoptrace/spans"
)

// Agent is the running node agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	flows   *flowTable
	exp     *exporter.Exporter
	sampler *spans.Sampler
	routes  *spans.Routes
	trust   *samplingTrust
	handoff *proxy.Handoff // nil: --local-handoff=false
	connids *connid.Table  // nil: hops through Service IPs are not handed off
	tracer  *selfTracer

	mu         sync.Mutex
	rd         *redirect.Redirector // nil until BPF is loaded
	loadErr    error                // why rd is nil
	inf        *infer.Inferrer      // nil without --infer-context or kernel support
	infErr     error                // why inf is nil although asked for
	reconciled bool                 // the first snapshot was applied
	pods       map[string]*podRun   // attached pods by ID
	failed     map[string]failure   // pods whose attach failed, retried on reconcile
	desired    map[string]pods.Pod  // the sources' latest wish
	problems   []string
}

type failure struct {
	pod   pods.Pod
	err   error
	since time.Time
}

// podRun is one captured pod: its attachment and its two proxies.
type podRun struct {
	pod      pods.Pod
	netnsIno uint64
	att      *redirect.Attachment
	out, in  *proxy.Proxy
	infer    *infer.Pod // nil unless the pod asked for inference and the agent has it
	obs      *podObserver
	since    time.Time
	done     sync.WaitGroup
}

// inferPod enables context inference for an attached pod.
func (a *Agent) inferPod(att *redirect.Attachment) (*infer.Pod, error) {
	a.mu.Lock()
	inf, infErr := a.inf, a.infErr
	a.mu.Unlock()
	switch {
	case inf != nil:
	case !a.cfg.InferContext:
		return nil, errors.New("the agent runs without --infer-context")
	default:
		return nil, infErr
	}
	addr, ok := att.Outbound.Addr().(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("outbound listener address %v is not TCP", att.Outbound.Addr())
	}
	return inf.Pod(att.NetnsCookie, uint16(addr.Port))
}

func (r *podRun) closeInfer() {
	if r.infer != nil {
		r.infer.Close()
	}
}

// New checks cfg and builds an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Sources) == 0 {
		return nil, errors.New("no pod source: give --pods-file or run in Kubernetes (--kubeconfig, or in-cluster with NODE_NAME)")
	}
	if cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return nil, fmt.Errorf("sample rate %v: must be between 0 and 1", cfg.SampleRate)
	}
	if !(cfg.ForcedTraceRate >= 0) {
		return nil, fmt.Errorf("forced trace rate %v: must be 0 or more", cfg.ForcedTraceRate)
	}
	routes, err := spans.NewRoutes(cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	if err := proxy.CheckCaptureHeaders(cfg.CaptureHeaders); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:     cfg,
		log:     cfg.Logger,
		m:       newMetrics(),
		flows:   newFlowTable(4096),
		sampler: spans.NewSampler(cfg.SampleRate),
		routes:  routes,
		trust:   newSamplingTrust(cfg.TrustExternalSampling, cfg.MeshNetworks),
		pods:    map[string]*podRun{},
		failed:  map[string]failure{},
	}
	if cfg.LocalHandoff {
		a.handoff = proxy.NewHandoff()
		a.m.reg.MustRegister(newHandoffCollector(a.handoff.Stats))
	}
	if cfg.Exporter.Logger == nil {
		cfg.Exporter.Logger = cfg.Logger.With("component", "exporter")
	}
	a.exp, err = exporter.New(cfg.Exporter)
	if err != nil {
		return nil, fmt.Errorf("exporter: %w", err)
	}
	a.m.reg.MustRegister(newExporterCollector(a.exp.Stats))
	a.m.reg.MustRegister(newInferCollector(func() (infer.Stats, bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.inf == nil {
			return infer.Stats{}, false
		}
		return a.inf.Stats(), true
	}))
	a.m.redirect.readCounters(func() (redirect.Counters, bool) {
		rd := a.redirector()
		if rd == nil {
			return redirect.Counters{}, false
		}
		c, err := rd.Counters()
		return c, err == nil
	})
	a.m.redirect.readFastPath(func() (redirect.FastPathCounters, bool) {
		rd := a.redirector()
		if rd == nil {
			return redirect.FastPathCounters{}, false
		}
		c, err := rd.FastPathCounters()
		return c, err == nil
	})
	return a, nil
}

// Run runs the agent until ctx ends, then shuts down: proxies drain, spans are
// flushed and capture is removed (unless KeepRedirectOnExit).
func (a *Agent) Run(ctx context.Context) error {
	admin, err := listenAdmin(a.cfg.AdminSocket)
	if err != nil {
		a.exp.Shutdown(context.Background())
		return err
	}
	srv := &http.Server{Handler: newAdminHandler(a, a.m, a.flows, true), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(admin)
	defer os.Remove(a.cfg.AdminSocket)
	// The TCP address has a server of its own: it serves fewer paths.
	tcpSrv := &http.Server{Handler: newAdminHandler(a, a.m, a.flows, a.cfg.AdminAddrFull), ReadHeaderTimeout: 5 * time.Second}
	if a.cfg.AdminAddr != "" {
		tcp, err := net.Listen("tcp", a.cfg.AdminAddr)
		if err != nil {
			srv.Close()
			a.exp.Shutdown(context.Background())
			return fmt.Errorf("admin address: %w", err)
		}
		go tcpSrv.Serve(tcp)
	}
	a.log.Info("admin API listening", "socket", a.cfg.AdminSocket, "addr", a.cfg.AdminAddr, "addr_full", a.cfg.AdminAddrFull)

	if a.cfg.SelfTrace {
		a.tracer = newSelfTracer(a.exp, a.cfg.NodeName)
	}

	a.loadBPF(ctx)

	snaps := make(chan pods.Snapshot)
	srcCtx, stopSources := context.WithCancel(ctx)
	var srcWG sync.WaitGroup
	for _, src := range a.cfg.Sources {
		srcWG.Add(1)
		go func() {
			defer srcWG.Done()
			if err := src.Run(srcCtx, snaps); err != nil && srcCtx.Err() == nil {
				a.log.Error("pod source stopped", "err", err)
			}
		}()
	}

	events := a.readEvents()
	tick := time.NewTicker(a.cfg.Reconcile)
	defer tick.Stop()
loop:
	for {
		select {
		case s := <-snaps:
			a.apply(ctx, s)
		case <-tick.C:
			if a.redirector() == nil {
				a.loadBPF(ctx) // the kernel may have been fixed (a module loaded)
			}
			a.reconcile(ctx)
		case <-ctx.Done():
			break loop
		}
	}
	stopSources()
	srcWG.Wait()
	a.shutdown(events)
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutCtx)
	tcpSrv.Shutdown(shutCtx)
	return nil
}

// loadBPF loads the redirect programs. On failure (a kernel feature missing, no
// privileges) the agent stays up but unready, touching no pod, and says why.
func (a *Agent) loadBPF(ctx context.Context) {
	end := a.tracer.start(ctx, "hoptrace.bpf.load")
	rd, err := redirect.Open(redirect.Config{PinDir: a.cfg.PinDir, OutboundPort: a.cfg.OutboundPort, InboundPort: a.cfg.InboundPort,
		FastPath: a.cfg.FastPath})
	end(err)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if a.loadErr == nil || a.loadErr.Error() != err.Error() {
			a.log.Error("cannot load BPF programs; pods are left untouched until this is fixed (see 'hoptrace check')", "err", err)
		}
		a.loadErr = err
		return
	}
	a.rd, a.loadErr = rd, nil
	a.log.Info("BPF programs loaded", "pin_dir", rd.PinDir())
	if err := rd.FastPath(); a.cfg.FastPath && err != nil {
		// Capture works without it: in-pod legs stay on loopback TCP.
		a.log.Warn("sk_msg fast path not in use", "err", err)
	}
	if a.handoff != nil && a.connids == nil {
		a.openConnIDs()
	}
	if a.cfg.InferContext && a.inf == nil {
		// Capture does not depend on it: without it, pods that ask for
		// inference are captured and traced as if they forwarded headers.
		if a.inf, a.infErr = infer.Open(); a.infErr != nil {
			a.log.Error("cannot load the context-inference programs; pods annotated "+pods.AnnotationContext+": infer are traced without it (see 'hoptrace check')", "err", a.infErr)
		} else {
			a.log.Info("context-inference programs loaded")
		}
	}
}

// openConnIDs lets hops through a Service's virtual IP be handed off in
// memory too (proxy.Handoff.IdentifyBy, package connid); without it they go
// over TCP between the proxies, and hops to pod addresses are handed off
// either way.
func (a *Agent) openConnIDs() {
	dir, err := cgroup2.Self()
	if err == nil {
		a.connids, err = connid.Open(dir)
	}
	if err != nil {
		a.log.Warn("hops through Service virtual IPs are not handed off in memory (hops to pod addresses are)", "err", err)
		return
	}
	t := a.connids
	a.handoff.IdentifyBy(func(c net.Conn) (proxy.ConnID, proxy.ConnEnds, bool) {
		id, ours, ok := t.Identify(c)
		return proxy.ConnID(id), proxy.ConnEnds(ours), ok
	})
	a.log.Info("hops through Service virtual IPs are handed off in memory too", "cgroup", dir)
}

func (a *Agent) redirector() *redirect.Redirector {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rd
}

// apply takes a source snapshot as the new desired set and reconciles.
func (a *Agent) apply(ctx context.Context, s pods.Snapshot) {
	desired := make(map[string]pods.Pod, len(s.Pods))
	for _, p := range s.Pods {
		desired[p.ID()] = p
	}
	problems := make([]string, 0, len(s.Problems))
	for _, p := range s.Problems {
		problems = append(problems, p.Error())
	}
	a.mu.Lock()
	if !slices.Equal(problems, a.problems) {
		for _, p := range problems {
			a.log.Warn("pod source problem", "problem", p)
		}
	}
	a.desired, a.problems = desired, problems
	a.mu.Unlock()
	a.reconcile(ctx)
}

// reconcile makes the attached pods match the desired set: it detaches deleted,
// changed and vanished pods and attaches new and previously failed ones. It is
// idempotent, so running it on a timer heals whatever a single event missed.
//
// Only Run's goroutine calls it, so the plan made under a.mu stays true while
// the slow work (BPF attach and detach, draining proxies for up to 2 s) runs
// without it: /readyz, /pods and the event reader never wait for a pod.
func (a *Agent) reconcile(ctx context.Context) {
	type release struct {
		run    *podRun
		reason string
	}
	a.mu.Lock()
	rd, desired, first := a.rd, a.desired, !a.reconciled
	if rd == nil || desired == nil {
		a.mu.Unlock()
		return
	}
	var releases []release
	for id, run := range a.pods {
		want, ok := desired[id]
		reason := ""
		switch {
		case !ok:
			reason = "deleted"
		case !netnsAlive(run.pod.NetnsPath, run.netnsIno):
			reason = "netns-gone"
		case changed(run, want):
			reason = "changed"
		}
		if reason != "" {
			delete(a.pods, id)
			releases = append(releases, release{run, reason})
		}
	}
	if len(releases) > 0 {
		a.sharePodsLocked()
	}
	for id := range a.failed {
		if _, ok := desired[id]; !ok {
			delete(a.failed, id)
		}
	}
	var attach []pods.Pod
	for id, p := range desired {
		if _, ok := a.pods[id]; !ok {
			attach = append(attach, p)
		}
	}
	a.mu.Unlock()
	// Map order would make the log and the attach order differ run to run.
	sort.Slice(releases, func(i, j int) bool { return releases[i].run.pod.ID() < releases[j].run.pod.ID() })
	sort.Slice(attach, func(i, j int) bool { return attach[i].ID() < attach[j].ID() })

	for _, r := range releases {
		a.detach(ctx, rd, r.run, r.reason)
	}
	if first {
		// Pods an earlier agent captured and that are no longer wanted.
		if ids, err := rd.Pinned(); err == nil {
			for _, id := range ids {
				if _, ok := desired[id]; !ok {
					if err := rd.Detach(id); err != nil {
						a.log.Warn("remove stale pod state", "pod", id, "err", err)
					} else {
						a.log.Info("removed capture left by an earlier agent", "pod", id)
					}
				}
			}
		}
	}
	for _, p := range attach {
		a.attach(ctx, rd, p)
	}
	a.mu.Lock()
	a.reconciled = true
	a.m.attached.Set(float64(len(a.pods)))
	a.mu.Unlock()
}

func changed(run *podRun, want pods.Pod) bool {
	have := run.pod
	if have.CgroupDir != want.CgroupDir || !slices.Equal(have.SkipInboundPorts, want.SkipInboundPorts) ||
		!slices.Equal(have.SkipOutboundPorts, want.SkipOutboundPorts) || have.ServiceName() != want.ServiceName() ||
		have.InferContext != want.InferContext {
		return true
	}
	// The same netns may be named by another path (another pid of the pod).
	return netnsInode(want.NetnsPath) != run.netnsIno
}

func netnsInode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

func netnsAlive(path string, ino uint64) bool {
	return ino != 0 && netnsInode(path) == ino
}

// attach captures p; it runs without a.mu (see reconcile) and takes it only to
// record the outcome.
func (a *Agent) attach(ctx context.Context, rd *redirect.Redirector, p pods.Pod) {
	id := p.ID()
	end := a.tracer.start(ctx, "hoptrace.pod.attach", spans.String("k8s.pod.name", p.Name), spans.String("k8s.namespace.name", p.Namespace))
	run, err := a.startPod(rd, p)
	end(err)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		prev, seen := a.failed[id]
		if !seen || prev.err.Error() != err.Error() {
			a.log.Error("cannot capture pod; will retry", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
		a.failed[id] = failure{pod: p, err: err, since: time.Now()}
		a.m.attachErrors.Inc()
		return
	}
	delete(a.failed, id)
	a.pods[id] = run
	a.sharePodsLocked()
	a.log.Info("pod captured", "pod", p.Namespace+"/"+p.Name, "service", p.ServiceName(), "ips", run.att.Addrs)
}

func (a *Agent) startPod(rd *redirect.Redirector, p pods.Pod) (*podRun, error) {
	ino := netnsInode(p.NetnsPath)
	att, err := rd.Attach(redirect.Pod{
		ID: p.ID(), CgroupDir: p.CgroupDir, NetnsPath: p.NetnsPath,
		SkipInboundPorts: p.SkipInboundPorts, SkipOutboundPorts: p.SkipOutboundPorts,
	})
	if err != nil {
		return nil, err
	}
	run := &podRun{pod: p, netnsIno: ino, att: att, since: time.Now()}
	run.obs = newPodObserver(a.m, a.flows, p.Namespace, p.Name)
	res := resourceFor(p, a.cfg.NodeName)
	logger := a.log.With("pod", p.Namespace+"/"+p.Name)
	forced := spans.NewTokenBucket(a.cfg.ForcedTraceRate, spans.BurstFor(a.cfg.ForcedTraceRate)) // per pod
	var inferCtx proxy.ContextInference
	if p.InferContext {
		if run.infer, err = a.inferPod(att); err != nil {
			logger.Warn("pod asks for context inference; tracing it without", "err", err)
		} else {
			inferCtx = run.infer
		}
	}
	mk := func(dir proxy.Direction, res2 proxy.Resolver, d proxy.Dialer) (*proxy.Proxy, error) {
		return proxy.New(proxy.Config{
			Direction: dir, Resolver: res2, Dialer: d,
			Recorder: a.exp, Sampler: a.sampler, Routes: a.routes, Resource: res,
			TrustSampling: a.trust.trusted, ForcedTraces: forced,
			SpliceIdleTimeout: a.cfg.SpliceIdleTimeout,
			Observer:          run.obs, SkipTrace: isKubeletProbe, Logger: logger,
			Infer: inferCtx, Handoff: a.handoff,
			CaptureHeaders: a.cfg.CaptureHeaders, QueryString: a.cfg.RecordQuery,
		})
	}
	if run.out, err = mk(proxy.Outbound, att.OutboundResolver(), att.OutboundDialer()); err == nil {
		run.in, err = mk(proxy.Inbound, att.InboundResolver(), att.InboundDialer())
	}
	if err != nil {
		run.closeInfer()
		rd.Detach(p.ID())
		return nil, fmt.Errorf("start proxies: %w", err)
	}
	// Each listener (IPv4, IPv6) served on its own: through the merged one
	// every new connection would pass from its accept loop to Serve's.
	for _, s := range []struct {
		p   *proxy.Proxy
		lns []net.Listener
	}{{run.out, att.OutboundListeners()}, {run.in, att.InboundListeners()}} {
		for _, ln := range s.lns {
			run.done.Add(1)
			go func() {
				defer run.done.Done()
				if err := s.p.Serve(ln); err != nil && !errors.Is(err, proxy.ErrClosed) && !errors.Is(err, net.ErrClosed) {
					logger.Warn("proxy stopped", "err", err)
				}
			}()
		}
	}
	return run, nil
}

// sharePodsLocked tells the sampling trust and the local hand-off the pods
// captured now, by the addresses their netns has and the ones the pod source
// reports.
func (a *Agent) sharePodsLocked() {
	var addrs []netip.Addr
	targets := make([]proxy.HandoffTarget, 0, len(a.pods))
	for _, run := range a.pods {
		n := len(addrs)
		addrs = append(addrs, run.att.Addrs...)
		addrs = append(addrs, run.pod.IPs...)
		targets = append(targets, proxy.HandoffTarget{Addrs: addrs[n:], SkipPorts: run.pod.SkipInboundPorts})
	}
	a.trust.setPods(addrs)
	if a.handoff != nil {
		a.handoff.SetTargets(targets)
	}
}

// isKubeletProbe exempts kubelet health checks from tracing: they would drown
// the real traffic. They are still proxied and counted.
func isKubeletProbe(r proxy.RequestInfo) bool {
	return strings.HasPrefix(r.UserAgent, "kube-probe/")
}

// detach releases a pod reconcile already took out of a.pods. It runs without
// a.mu: draining the proxies takes up to 2 s.
func (a *Agent) detach(ctx context.Context, rd *redirect.Redirector, run *podRun, reason string) {
	end := a.tracer.start(ctx, "hoptrace.pod.detach", spans.String("k8s.pod.name", run.pod.Name), spans.String("hoptrace.reason", reason))
	// Capture first, so the app's new connections go direct while the proxies
	// finish the ones they have.
	err := rd.Detach(run.pod.ID())
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	run.stop(shutCtx)
	cancel()
	run.obs.forget()
	end(err)
	a.m.detached.WithLabelValues(reason).Inc()
	lvl := slog.LevelInfo
	if reason == "netns-gone" {
		lvl = slog.LevelWarn
	}
	a.log.Log(ctx, lvl, "pod released", "pod", run.pod.Namespace+"/"+run.pod.Name, "reason", reason, "err", err)
}

// stop drains both proxies until ctx ends, closes what is left and waits for
// their Serve goroutines, so nothing of the pod's runs on after it.
func (run *podRun) stop(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range []*proxy.Proxy{run.out, run.in} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Shutdown(ctx)
			p.Close()
		}()
	}
	wg.Wait()
	run.done.Wait()
	run.closeInfer()
}

// shutdown releases every pod, drains proxies and flushes spans.
func (a *Agent) shutdown(events *redirect.EventReader) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.mu.Lock()
	runs := a.pods
	a.pods = map[string]*podRun{}
	rd := a.rd
	a.mu.Unlock()

	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !a.cfg.KeepRedirectOnExit && rd != nil {
				rd.Detach(run.pod.ID())
			}
			run.stop(ctx)
		}()
	}
	wg.Wait()
	a.mu.Lock()
	if a.inf != nil {
		a.inf.Close()
		a.inf = nil
	}
	if a.connids != nil {
		a.connids.Close()
		a.connids = nil
	}
	a.mu.Unlock()
	if events != nil {
		events.Close()
	}
	if rd != nil {
		var err error
		if a.cfg.KeepRedirectOnExit {
			err = rd.Release()
			a.log.Info("left BPF capture in place for the next agent (--keep-redirect-on-exit)", "pin_dir", rd.PinDir())
		} else {
			err = rd.Close()
		}
		if err != nil {
			a.log.Warn("release BPF state", "err", err)
		}
	}
	if err := a.exp.Shutdown(ctx); err != nil {
		a.log.Warn("flush spans", "err", err)
	}
	a.tracer.shutdown(ctx)
	s := a.exp.Stats()
	a.log.Info("agent stopped", "spans_exported", s.Exported, "spans_dropped", s.Dropped.Total())
}

// readEvents turns the BPF redirect events into metrics and bypassed flows.
func (a *Agent) readEvents() *redirect.EventReader {
	rd := a.redirector()
	if rd == nil {
		return nil
	}
	er, err := rd.Events()
	if err != nil {
		a.log.Warn("redirect events unavailable", "err", err)
		return nil
	}
	go func() {
		for {
			ev, err := er.Read()
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					a.log.Warn("redirect events stopped", "err", err)
				}
				return
			}
			if ev.Reason.Redirected() {
				continue // counted by the kernel; the proxy reports these flows itself
			}
			a.m.redirect.event(ev.Direction.String(), ev.Reason.String())
			f := Flow{
				Pod: a.podName(ev.PodID), Direction: ev.Direction.String(), Dst: ev.Dst.String(),
				Protocol: "tcp", Reason: ev.Reason.String(), Start: ev.Time, End: ev.Time, PID: ev.PID, Comm: ev.Comm,
			}
			if ev.Src.IsValid() {
				f.Client = ev.Src.String()
			} else if ev.Comm != "" {
				f.Client = fmt.Sprintf("%s[%d]", ev.Comm, ev.PID)
			}
			a.flows.add(f)
		}
	}()
	return er
}

func (a *Agent) podName(id string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if run, ok := a.pods[id]; ok {
		return run.pod.Namespace + "/" + run.pod.Name
	}
	if p, ok := a.desired[id]; ok {
		return p.Namespace + "/" + p.Name
	}
	return id
}

func (a *Agent) ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.rd == nil && a.loadErr != nil:
		return fmt.Errorf("BPF programs not loaded: %w", a.loadErr)
	case a.rd == nil:
		return errors.New("loading BPF programs")
	case !a.reconciled:
		return errors.New("waiting for the first pod list")
	}
	return nil
}

func (a *Agent) podsReport() PodsReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := PodsReport{Node: a.cfg.NodeName, Problems: a.problems, Pods: []PodInfo{}}
	for id, run := range a.pods {
		info := podInfo(id, run.pod, "attached", run.since)
		for _, ip := range run.att.Addrs {
			info.IPs = append(info.IPs, ip.String())
		}
		r.Pods = append(r.Pods, info)
	}
	for id, f := range a.failed {
		info := podInfo(id, f.pod, "failed", f.since)
		info.Error = f.err.Error()
		r.Pods = append(r.Pods, info)
	}
	sort.Slice(r.Pods, func(i, j int) bool {
		if r.Pods[i].Namespace != r.Pods[j].Namespace {
			return r.Pods[i].Namespace < r.Pods[j].Namespace
		}
		return r.Pods[i].Name < r.Pods[j].Name
	})
	return r
}

func podInfo(id string, p pods.Pod, state string, since time.Time) PodInfo {
	return PodInfo{ID: id, Name: p.Name, Namespace: p.Namespace, Service: p.ServiceName(), State: state,
		Netns: p.NetnsPath, Cgroup: p.CgroupDir, Since: since}
}

func (a *Agent) openFlows() []Flow {
	a.mu.Lock()
	runs := make([]*podRun, 0, len(a.pods))
	for _, r := range a.pods {
		runs = append(runs, r)
	}
	a.mu.Unlock()
	var out []Flow
	for _, r := range runs {
		for _, p := range []*proxy.Proxy{r.out, r.in} {
			for _, s := range p.Flows() {
				out = append(out, flowFromStats(r.obs.pod, s))
			}
		}
	}
	return out
}
