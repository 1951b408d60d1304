package infer

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/hoptrace/hoptrace/bpf"
	"github.com/hoptrace/hoptrace/spans"
)

// Inferrer owns the node's inference programs and maps. Nothing is pinned: the
// programs go when the agent does, and the proxies that fed them too.
type Inferrer struct {
	objs  bpf.InferObjects
	links []link.Link
	seq   atomic.Uint64
	n     counters
	goRT  *goPrograms

	mu     sync.Mutex
	closed bool
}

// Open loads and attaches the inference programs. Kernels without BTF or the
// hooked functions get an error wrapping ErrNotSupported.
func Open() (*Inferrer, error) {
	if _, err := btf.LoadKernelSpec(); err != nil {
		return nil, fmt.Errorf("kernel BTF: %w: %w", ErrNotSupported, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	i := &Inferrer{goRT: newGoPrograms()}
	if err := bpf.LoadInferObjects(&i.objs, nil); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) || isMissingTarget(err) {
			return nil, fmt.Errorf("load inference programs: %w: %w", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("load inference programs: %w", err)
	}
	for _, p := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{
		{i.objs.HoptraceInferRecv, ebpf.AttachTraceFExit},
		{i.objs.HoptraceInferSend, ebpf.AttachTraceFEntry},
	} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog, AttachType: p.attach})
		if err != nil {
			i.Close()
			if errors.Is(err, ebpf.ErrNotSupported) {
				return nil, fmt.Errorf("attach %s: %w: %w", p.prog, ErrNotSupported, err)
			}
			return nil, fmt.Errorf("attach %s: %w", p.prog, err)
		}
		i.links = append(i.links, l)
	}
	return i, nil
}

// Supported loads and attaches the programs once and removes them again: nil,
// or why inference cannot run here (wrapping ErrNotSupported when the kernel
// lacks BTF or the tracepoints). For hoptrace check.
func Supported() error {
	i, err := Open()
	if err != nil {
		return err
	}
	return i.Close()
}

// isMissingTarget reports a load that failed because the kernel has no such
// function to attach to (a kernel older than tcp_recvmsg_locked, 5.13).
func isMissingTarget(err error) bool {
	return errors.Is(err, btf.ErrNotFound)
}

// Close detaches and unloads everything.
func (i *Inferrer) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return nil
	}
	i.closed = true
	var errs []error
	for _, l := range i.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, i.objs.Close())
	return errors.Join(errs...)
}

// Stats returns the outcomes so far.
func (i *Inferrer) Stats() Stats {
	s := Stats{Linked: i.n.linked.Load(), Ambiguous: i.n.ambiguous.Load(), NoData: i.n.noData.Load()}
	var per []uint64
	for idx, dst := range []*uint64{&s.RequestsRead, &s.Multiplexed, &s.WritesRecorded} {
		if err := i.objs.InferCounters.Lookup(uint32(idx), &per); err == nil {
			for _, v := range per {
				*dst += v
			}
		}
	}
	return s
}

// KernelTime is what the programs cost so far: how often they ran and for how
// long in all, while the kernel keeps BPF run-time statistics
// (ebpf.EnableStats); zero otherwise.
func (i *Inferrer) KernelTime() (runs uint64, total time.Duration) {
	for _, p := range []*ebpf.Program{i.objs.HoptraceInferRecv, i.objs.HoptraceInferSend} {
		st, err := p.Stats()
		if err != nil {
			continue
		}
		runs += st.RunCount
		total += st.Runtime
	}
	return runs, total
}

// Pod enables inference for the pod with this netns cookie whose outbound
// listener has port outboundPort. The returned Pod is the pod's two proxies'
// proxy.ContextInference.
func (i *Inferrer) Pod(netnsCookie uint64, outboundPort uint16) (*Pod, error) {
	v := bpf.InferPod{OutboundPort: outboundPort}
	if err := i.objs.InferPods.Put(netnsCookie, &v); err != nil {
		return nil, fmt.Errorf("enable inference for netns %d: %w", netnsCookie, err)
	}
	return &Pod{i: i, netns: netnsCookie, port: outboundPort}, nil
}

// Pod is inference for one pod. Its methods are safe for concurrent use.
type Pod struct {
	i     *Inferrer
	netns uint64
	port  uint16
}

// Close disables inference for the pod. Entries it left in the LRU maps age out.
func (p *Pod) Close() error {
	if err := p.i.objs.InferPods.Delete(p.netns); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("disable inference for netns %d: %w", p.netns, err)
	}
	return nil
}

// Sending implements proxy.ContextInference: the next bytes the inbound proxy
// writes on its connection c to the app are a new request, carrying ctx. The
// kernel notes where in the stream they start as they are written.
func (p *Pod) Sending(c net.Conn, ctx spans.Context) {
	local, ok1 := tcpAddr(c.LocalAddr())
	remote, ok2 := tcpAddr(c.RemoteAddr())
	if !ok1 || !ok2 {
		return
	}
	k := connKey(p.netns, local, remote.Port(), 0)
	v := bpf.InferInflight{Seq: p.i.seq.Add(1)}
	if ctx.IsValid() {
		v.Ctx.TraceId, v.Ctx.SpanId, v.Ctx.Flags = ctx.TraceID, ctx.SpanID, ctx.Flags()
	}
	// Failing to announce leaves this request unlinkable; the thread's last
	// request stays answered, so nothing is linked wrongly.
	_ = p.i.objs.InferInflight.Put(&k, &v)
}

// Parent implements proxy.ContextInference for the outbound proxy's client
// connection c (the app's end is its remote address).
func (p *Pod) Parent(c net.Conn, off int64) (spans.Context, bool) {
	if c == nil || off < 0 {
		p.i.n.add(NoData) // HTTP/2: not linked yet
		return spans.Context{}, false
	}
	app, ok1 := tcpAddr(c.RemoteAddr())
	listener, ok2 := tcpAddr(c.LocalAddr())
	if !ok1 || !ok2 {
		p.i.n.add(NoData)
		return spans.Context{}, false
	}
	k := connKey(p.netns, app, listener.Port(), uint32(off))
	var l bpf.InferLink
	if err := p.i.objs.InferLinks.LookupAndDelete(&k, &l); err != nil {
		p.i.n.add(NoData)
		return spans.Context{}, false
	}
	ctx := contextOf(l.Ctx.TraceId, l.Ctx.SpanId, l.Ctx.Flags)
	r := resultOf(l.Verdict, ctx, func() bool { return p.i.goRT.is(l.Tgid) })
	p.i.n.add(r)
	return ctx, r == Linked
}

func connKey(netns uint64, a netip.AddrPort, portB uint16, off uint32) bpf.InferConnKey {
	k := bpf.InferConnKey{NetnsCookie: netns, PortA: a.Port(), PortB: portB, Offset: off}
	b := a.Addr().As16() // IPv4 as IPv4-mapped, as the kernel key has it
	for j := range k.Addr.Ip {
		k.Addr.Ip[j] = uint32(b[4*j]) | uint32(b[4*j+1])<<8 | uint32(b[4*j+2])<<16 | uint32(b[4*j+3])<<24
	}
	return k
}

func tcpAddr(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
