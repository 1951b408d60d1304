package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hoptrace/hoptrace/spans"
)

// Run bounded, e.g.:
//
//	go test ./proxy -run '^$' -fuzz '^FuzzH2Relay$' -fuzztime 60s

// h2Frames writes frames with x/net's Framer, for seeds and benchmarks.
func h2Frames(write func(fr *http2.Framer, enc func(fields ...string) []byte)) []byte {
	var out, blk bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	fr.AllowIllegalWrites = true
	e := hpack.NewEncoder(&blk)
	enc := func(fields ...string) []byte {
		blk.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			e.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return append([]byte(nil), blk.Bytes()...)
	}
	write(fr, enc)
	return out.Bytes()
}

func h2FuzzSeeds() (clients, upstreams [][]byte) {
	req := []string{":method", "POST", ":scheme", "http", ":authority", "svc-b.test", ":path", "/pkg.Svc/Call",
		"content-type", "application/grpc", "te", "trailers", "traceparent", sampledHeader, "hoptrace-sample", "1", "connection", "x"}
	clients = append(clients,
		h2Frames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
			fr.WriteSettingsAck()
			fr.WriteWindowUpdate(0, 1<<20)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req...), EndHeaders: true})
			fr.WriteData(1, false, []byte("\x00\x00\x00\x00\x02hi"))
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("x-trailer", "1"), EndHeaders: true, EndStream: true})
			b := enc(req...)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:5], Priority: http2.PriorityParam{StreamDep: 1, Weight: 9}, PadLength: 3})
			fr.WriteContinuation(3, true, b[5:])
			fr.WriteRSTStream(3, http2.ErrCodeCancel)
			fr.WritePing(false, [8]byte{1})
			fr.WriteGoAway(3, http2.ErrCodeNo, []byte("bye"))
		}),
		h2Frames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings()
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":method", "GET", ":path", "/", "X-Bad", "1"), EndHeaders: true, EndStream: true})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(":method", "GET", ":path", "/", "x", strings.Repeat("v", 5000)), EndHeaders: true})
			fr.WriteData(3, true, []byte("dropped"))
			fr.WriteContinuation(5, true, nil)
		}),
	)
	upstreams = append(upstreams,
		h2Frames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16385})
			fr.WriteSettingsAck()
			b := enc(":status", "200", "content-type", "application/grpc")
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:1]})
			fr.WriteContinuation(1, true, b[1:])
			fr.WriteData(1, false, []byte("\x00\x00\x00\x00\x02ok"))
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("grpc-status", "0"), EndHeaders: true, EndStream: true})
			fr.WritePushPromise(http2.PushPromiseParam{StreamID: 3, PromiseID: 2, BlockFragment: enc(":method", "GET"), EndHeaders: true})
			fr.WriteRSTStream(3, http2.ErrCodeRefusedStream)
			fr.WriteGoAway(1, http2.ErrCodeNo, nil)
		}),
		h2Frames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings()
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200"), EndHeaders: true})
			fr.WriteData(1, false, []byte("partial"))
		}),
		[]byte("HTTP/1.1 400 Bad Request\r\n\r\n"),
	)
	return clients, upstreams
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB, ln net.Listener) (a, b net.Conn) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return a, r.c
}

// FuzzH2Relay feeds a relay arbitrary bytes from both peers, all of them sent
// before it starts. It must never panic or hang, and what it sends upstream must
// stay framed, with header blocks (which it encodes itself) that decode and carry
// neither the override header nor connection-specific fields.
func FuzzH2Relay(f *testing.F) {
	clients, upstreams := h2FuzzSeeds()
	for i, c := range clients {
		for _, u := range upstreams {
			f.Add(c, u, uint8(i))
		}
	}
	ln := listen(f)
	defer ln.Close()
	p, err := New(Config{
		Direction: Outbound, Resolver: LocalAddrResolver, Recorder: &discard{},
		Sampler: spans.NewSampler(0.5), CaptureHeaders: []string{"content-type", "x-trailer"},
		MaxHeaderBytes: 4096, HeaderTimeout: 20 * time.Millisecond,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, fromClient, fromUpstream []byte, opts uint8) {
		client, cc := tcpPair(t, ln)
		defer client.Close()
		upstream, uc := tcpPair(t, ln)
		defer upstream.Close()
		client.Write([]byte(h2Preface))
		client.Write(fromClient)
		closeWrite(client)
		upstream.Write(fromUpstream)
		if opts&1 == 0 {
			closeWrite(upstream) // else the upstream stays silent: the relay must still end
		}

		toUpstream := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(upstream)
			toUpstream <- b
			if opts&1 != 0 {
				upstream.Close()
			}
		}()
		go io.Copy(io.Discard, client)

		fl := &flow{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			r := newH2Relay(p, fl, netip.AddrPort{}, cc, bufio.NewReader(cc), uc)
			r.run()
			r.release()
			cc.Close()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the relay did not end")
		}
		checkUpstreamOutput(t, <-toUpstream)
	})
}

// checkUpstreamOutput checks what a relay sent upstream.
func checkUpstreamOutput(t *testing.T, b []byte) {
	if !bytes.HasPrefix(b, []byte(h2Preface)) {
		if len(b) > 0 {
			t.Fatalf("upstream got %q before the preface", b[:min(len(b), 24)])
		}
		return
	}
	b = b[len(h2Preface):]
	dec := hpack.NewDecoder(4096, nil)
	var block []byte
	var blockStream uint32
	for len(b) >= h2FrameHeaderLen {
		fh := parseH2FrameHeader(b)
		if len(b) < h2FrameHeaderLen+int(fh.length) {
			return // the client's last frame was cut short, and relayed so far
		}
		payload := b[h2FrameHeaderLen : h2FrameHeaderLen+int(fh.length)]
		b = b[h2FrameHeaderLen+int(fh.length):]
		if block != nil && (fh.typ != http2.FrameContinuation || fh.stream != blockStream) {
			t.Fatalf("header block on stream %d interrupted by frame type %v", blockStream, fh.typ)
		}
		switch fh.typ {
		case http2.FrameHeaders:
			frag, _, err := headerFragment(fh, payload)
			if err != nil {
				t.Fatalf("relay wrote a bad HEADERS frame: %v", err)
			}
			if fh.flags.Has(http2.FlagHeadersPadded) {
				t.Fatal("relay wrote padding")
			}
			block, blockStream = append([]byte{}, frag...), fh.stream
		case http2.FrameContinuation:
			if block == nil {
				t.Fatal("relay wrote CONTINUATION outside a block")
			}
			block = append(block, payload...)
		default:
			continue
		}
		if !fh.flags.Has(http2.FlagHeadersEndHeaders) {
			continue
		}
		fields, err := dec.DecodeFull(block)
		if err != nil {
			t.Fatalf("relay encoded a block that does not decode: %v", err)
		}
		for _, f := range fields {
			if f.Name == "hoptrace-sample" || connectionSpecific(f.Name) {
				t.Fatalf("relay forwarded %s", f.Name)
			}
		}
		block = nil
	}
}

// BenchmarkH2FrameRelay relays the frames of gRPC unary responses from one
// buffered connection to another: with x/net's Framer, and as the relay does,
// parsing frame headers only.
func BenchmarkH2FrameRelay(b *testing.B) {
	one := h2Frames(func(fr *http2.Framer, enc func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":status", "200", "content-type", "application/grpc"), EndHeaders: true})
		fr.WriteData(1, false, make([]byte, 64))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("grpc-status", "0"), EndHeaders: true, EndStream: true})
		fr.WriteWindowUpdate(0, 64)
	})
	input := bytes.Repeat(one, 256)
	src := bytes.NewReader(input)
	br := bufio.NewReaderSize(src, connBufSize)
	bw := bufio.NewWriterSize(io.Discard, connBufSize)
	b.Run("framer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(input)))
		for b.Loop() {
			src.Reset(input)
			br.Reset(src)
			fr := http2.NewFramer(bw, br)
			fr.SetReuseFrames()
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					break
				}
				var payload []byte
				switch f := f.(type) {
				case *http2.DataFrame:
					payload = f.Data()
				case *http2.HeadersFrame:
					payload = f.HeaderBlockFragment()
				case *http2.WindowUpdateFrame:
					fr.WriteWindowUpdate(f.StreamID, f.Increment)
					continue
				}
				fh := f.Header()
				fr.WriteRawFrame(fh.Type, fh.Flags, fh.StreamID, payload)
			}
			bw.Flush()
		}
	})
	b.Run("relay", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(input)))
		o := &h2Out{bw: bw}
		for b.Loop() {
			src.Reset(input)
			br.Reset(src)
			for {
				fh, err := readH2FrameHeader(br, o)
				if err != nil {
					break
				}
				copyN(br, o, h2FrameHeaderLen+int(fh.length))
			}
			bw.Flush()
		}
	})
}
