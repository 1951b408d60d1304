package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with -pprof-addr
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/hoptrace/hoptrace/cores"
	"github.com/hoptrace/hoptrace/exporter"
	"github.com/hoptrace/hoptrace/netns"
	"github.com/hoptrace/hoptrace/proxy"
	"github.com/hoptrace/hoptrace/spans"
)

type options struct {
	outbound, inbound []string // netns paths
	outPort, inPort   int
	mark              int
	sampleRate        float64
	otlpEndpoint      string
	cpuProfile        string
	pprofAddr         string
	handoff           []netip.Addr // pods whose hops are handed off in memory
	cores             string
}

func main() {
	var o options
	flag.Func("outbound", "netns path of a pod whose outbound traffic is redirected here (repeatable)", func(v string) error {
		o.outbound = append(o.outbound, v)
		return nil
	})
	flag.Func("inbound", "netns path of a pod whose inbound traffic is redirected here (repeatable)", func(v string) error {
		o.inbound = append(o.inbound, v)
		return nil
	})
	flag.Func("local-handoff-addr", "address of a pod whose proxies run here: hops between two such pods pass their bytes in memory, as the agent's --local-handoff does (repeatable)", func(v string) error {
		a, err := netip.ParseAddr(v)
		o.handoff = append(o.handoff, a)
		return err
	})
	flag.IntVar(&o.outPort, "outbound-port", 15001, "outbound listener port (the rules' REDIRECT --to-ports)")
	flag.IntVar(&o.inPort, "inbound-port", 15006, "inbound listener port")
	flag.IntVar(&o.mark, "mark", 0x1bad, "SO_MARK of upstream dials, which the rules must not redirect")
	flag.Float64Var(&o.sampleRate, "sample-rate", 0, "trace sampling rate")
	flag.StringVar(&o.otlpEndpoint, "otlp-endpoint", "", "export sampled spans over OTLP/gRPC here (default: decide and propagate, export nothing)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile here until SIGTERM")
	flag.StringVar(&o.pprofAddr, "pprof-addr", "", "serve net/http/pprof here (host netns), e.g. 127.0.0.1:6060, for heap profiles mid-run")
	flag.StringVar(&o.cores, "cores", "auto", "as the agent's --cores: auto steers GOMAXPROCS by load, or a fixed count")
	flag.Parse()
	log.SetPrefix("iptproxy: ")
	log.SetFlags(0)
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func run(o options) error {
	if len(o.outbound)+len(o.inbound) == 0 {
		return errors.New("nothing to do: give --outbound and/or --inbound")
	}
	// The same steering as the agent's, so that the two differ in capture only.
	switch n, err := cores.ParseFlag(o.cores); {
	case err != nil:
		return fmt.Errorf("-cores: %w", err)
	case n > 0:
		cores.Fixed(n)
	default:
		defer cores.Auto(runtime.GOMAXPROCS(0)).Stop()
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if o.pprofAddr != "" {
		ln, err := net.Listen("tcp", o.pprofAddr)
		if err != nil {
			return fmt.Errorf("pprof: %w", err)
		}
		go http.Serve(ln, nil) // net/http/pprof registers on the default mux
	}
	sampler := spans.NewSampler(o.sampleRate)
	var rec spans.Recorder
	if o.otlpEndpoint != "" {
		exp, err := exporter.New(exporter.Config{Endpoint: o.otlpEndpoint})
		if err != nil {
			return fmt.Errorf("exporter: %w", err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			exp.Shutdown(ctx)
			log.Printf("exporter: %+v", exp.Stats())
		}()
		rec = exp
	}
	res := &spans.Resource{Attrs: []spans.Attr{spans.String("service.name", "iptproxy")}}
	var handoff *proxy.Handoff
	if len(o.handoff) > 0 {
		handoff = proxy.NewHandoff()
		handoff.SetTargets([]proxy.HandoffTarget{{Addrs: o.handoff}})
	}
	var proxies []*proxy.Proxy
	var errs []error
	serve := func(dir proxy.Direction, nsPath, addr string) error {
		ln, dialer, err := openSide(nsPath, addr, o.mark)
		if err != nil {
			return err
		}
		p, err := proxy.New(proxy.Config{
			Direction: dir, Resolver: proxy.ResolverFunc(originalDst), Dialer: dialer,
			Sampler: sampler, Recorder: rec, Resource: res, Handoff: handoff,
		})
		if err != nil {
			ln.Close()
			return fmt.Errorf("%s proxy: %w", dir, err)
		}
		proxies = append(proxies, p)
		go func() {
			if err := p.Serve(ln); err != nil && !errors.Is(err, proxy.ErrClosed) {
				log.Printf("%s proxy in %s stopped: %v", dir, nsPath, err)
			}
		}()
		return nil
	}
	for _, ns := range o.outbound {
		errs = append(errs, serve(proxy.Outbound, ns, fmt.Sprintf("127.0.0.1:%d", o.outPort)))
	}
	for _, ns := range o.inbound {
		errs = append(errs, serve(proxy.Inbound, ns, fmt.Sprintf("0.0.0.0:%d", o.inPort)))
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, p := range proxies {
			p.Shutdown(ctx)
			p.Close()
		}
	}
	if err := errors.Join(errs...); err != nil {
		stop()
		return err
	}
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	stop()
	if handoff != nil {
		log.Printf("local hand-off: %+v", handoff.Stats())
	}
	return nil
}

// openSide opens a listener inside a pod's netns and the dialer for its
// upstream connections.
func openSide(nsPath, addr string, mark int) (net.Listener, proxy.Dialer, error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("open netns: %w", err)
	}
	var ln net.Listener
	err = netns.Do(int(ns.Fd()), func() error {
		// As in hoptrace (redirect.listenLoopback): no MPTCP, whose sockets
		// differ in what the kernel lets a proxy do with them, and no
		// keep-alive probes on accepted connections, whose four setsockopt
		// calls per accept the agent does not make either.
		lc := net.ListenConfig{KeepAlive: -1}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", addr)
		return err
	})
	if err != nil {
		ns.Close()
		return nil, nil, fmt.Errorf("listen on %s in %s: %w", addr, nsPath, err)
	}
	// ns stays open for the dialer for the life of the process.
	return ln, &markDialer{ns: ns, nsFd: int(ns.Fd()), mark: mark}, nil
}
