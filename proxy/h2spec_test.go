package proxy

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/hoptrace/hoptrace/internal/testenv"
)

// h2spec (github.com/summerwind/h2spec), built by `make h2spec`
// (scripts/h2spec.sh) into ${HOPTRACE_CACHE:-~/.cache/hoptrace}/bin, checks an
// HTTP/2 server against RFC 9113 and RFC 7541: 145 tests in its default
// generic, http2 and hpack suites. The proxy is an HTTP/2 endpoint toward the
// client, so it must pass them whatever the app behind it does (docs/http2.md).

// h2specBinary returns the h2spec binary, or skips t without it (fails when
// tests are required).
func h2specBinary(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("HOPTRACE_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		cache = filepath.Join(home, ".cache", "hoptrace")
	}
	bin := filepath.Join(cache, "bin", "h2spec")
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		reason := fmt.Sprintf("h2spec: nothing executable at %s; `make h2spec` builds it", bin)
		if os.Getenv("CI") != "" {
			t.Fatal(reason)
		}
		testenv.Unavailable(t, reason)
	}
	return bin
}

// h2specResult is what one h2spec run reported.
type h2specResult struct {
	total, passed int
	failures      []string // "section: description", as h2specInvalidPreface
	output        string
}

// h2specInvalidPreface is h2spec's test of a connection that begins with
// something other than the HTTP/2 preface.
const h2specInvalidPreface = "http2/3.5: Sends invalid connection preface"

// runH2spec runs every default h2spec test against addr, waiting up to wait for
// each answer.
func runH2spec(t *testing.T, bin string, addr netip.AddrPort, wait time.Duration) h2specResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	report := filepath.Join(t.TempDir(), "junit.xml")
	cmd := exec.CommandContext(ctx, bin, "-h", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())), "-o", strconv.Itoa(int(wait/time.Second)), "-j", report)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run() // exits non-zero when a test failed: the report says which
	b, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("h2spec: %v, %v:\n%s", err, rerr, out.String())
	}
	var junit struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				Desc    string    `xml:"classname,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &junit); err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	res := h2specResult{output: out.String()}
	for _, s := range junit.Suites {
		for _, c := range s.Cases {
			res.total++
			switch {
			case c.Failure != nil || c.Error != nil || c.Skipped != nil:
				res.failures = append(res.failures, s.Package+": "+c.Desc)
			default:
				res.passed++
			}
		}
	}
	return res
}

// h2specApp is a Go net/http server speaking h2c, as an app in a pod would: it
// reads request bodies and answers with a small one.
func h2specApp(t *testing.T) netip.AddrPort {
	return h2cApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello from the app\n")
	})).AddrPort()
}

// lenientH2App is an HTTP/2 server that checks nothing: it answers every header
// block with a small response, whatever came before, and never sends an error.
// Only its sending side is right (flow control, SETTINGS and PING ACKs), so that
// every check h2spec makes through the mesh is the proxy's own.
// It announces settings, and notes what it reads in log when that is not nil.
func lenientH2App(t testing.TB, log *frameLog, settings ...http2.Setting) netip.AddrPort {
	t.Helper()
	return tcpApp(t, func(c net.Conn) { serveLenient(c, log, settings) })
}

// frameLog is what a lenient app read, a frame a line, as "DATA 1 len=4 END",
// "RST_STREAM 1 CANCEL" or "SETTINGS INITIAL_WINDOW_SIZE=1".
type frameLog struct {
	mu     sync.Mutex
	frames []string
}

func (l *frameLog) add(f http2.Frame) {
	if l == nil {
		return
	}
	fh := f.Header()
	line := fmt.Sprintf("%v %d", fh.Type, fh.StreamID)
	switch f := f.(type) {
	case *http2.DataFrame:
		line += fmt.Sprintf(" len=%d", len(f.Data()))
		if f.StreamEnded() {
			line += " END"
		}
	case *http2.HeadersFrame:
		if f.StreamEnded() {
			line += " END"
		}
	case *http2.RSTStreamFrame:
		line += " " + f.ErrCode.String()
	case *http2.SettingsFrame:
		if f.IsAck() {
			return
		}
		line = "SETTINGS"
		f.ForeachSetting(func(s http2.Setting) error {
			line += " " + s.String()
			return nil
		})
	case *http2.WindowUpdateFrame, *http2.PingFrame:
		return
	}
	l.mu.Lock()
	l.frames = append(l.frames, line)
	l.mu.Unlock()
}

func (l *frameLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.frames)
}

func serveLenient(c net.Conn, log *frameLog, settings []http2.Setting) {
	defer c.Close()
	pre := make([]byte, len(h2Preface))
	if _, err := io.ReadFull(c, pre); err != nil || string(pre) != h2Preface {
		// Not HTTP/2: closed as a careful server closes, reading what the
		// client sent so that the close is a FIN and not a reset.
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, c)
		return
	}
	fr := http2.NewFramer(c, c)
	fr.AllowIllegalReads, fr.AllowIllegalWrites = true, true
	fr.SetMaxReadFrameSize(1<<24 - 1)
	fr.WriteSettings(settings...)
	dec := hpack.NewDecoder(4096, func(hpack.HeaderField) {})
	var encBuf bytes.Buffer
	enc := hpack.NewEncoder(&encBuf)
	body := []byte("hello from the lenient app\n")
	type stream struct {
		window  int64
		pending []byte
	}
	streams := map[uint32]*stream{}
	initial, conn := int64(65535), int64(65535)
	flush := func() {
		for id, st := range streams {
			for len(st.pending) > 0 && st.window > 0 && conn > 0 {
				n := min(int64(len(st.pending)), st.window, conn, 16384)
				fr.WriteData(id, int64(len(st.pending)) == n, st.pending[:n])
				st.pending, st.window, conn = st.pending[n:], st.window-n, conn-n
			}
			if len(st.pending) == 0 {
				delete(streams, id)
			}
		}
	}
	answered := map[uint32]bool{}
	respond := func(id uint32, block []byte) {
		dec.Write(block) // errors ignored: this app believes anything
		if answered[id] || id == 0 {
			return
		}
		answered[id] = true
		encBuf.Reset()
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "text/plain"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: encBuf.Bytes(), EndHeaders: true})
		streams[id] = &stream{window: initial, pending: body}
	}
	var block []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			if errors.As(err, &se) || errors.As(err, &ce) {
				continue // the frame was read whole: carry on regardless
			}
			return
		}
		log.add(f)
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				break
			}
			f.ForeachSetting(func(s http2.Setting) error {
				if s.ID == http2.SettingInitialWindowSize {
					for _, st := range streams {
						st.window += int64(s.Val) - initial
					}
					initial = int64(s.Val)
				}
				return nil
			})
			fr.WriteSettingsAck()
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				conn += int64(f.Increment)
			} else if st := streams[f.StreamID]; st != nil {
				st.window += int64(f.Increment)
			}
		case *http2.DataFrame:
			if n := f.Header().Length; n > 0 {
				fr.WriteWindowUpdate(0, n)
			}
		case *http2.HeadersFrame:
			block = append(block[:0], f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				respond(f.StreamID, block)
			}
		case *http2.ContinuationFrame:
			block = append(block, f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				respond(f.StreamID, block)
			}
		}
		flush()
	}
}

// TestH2spec runs h2spec through the mesh (client → outbound proxy → inbound
// proxy → app) in front of a Go h2c server and in front of a server that checks
// nothing: every test must pass either way, the one about a connection that
// does not start with the preface aside when the app fails it itself. Such a
// connection is not HTTP/2 to a transparent proxy: it is spliced to the app as
// it is, and the client gets the app's own answer (Go's server resets it, which
// h2spec does not take for a close).
func TestH2spec(t *testing.T) {
	bin := h2specBinary(t)
	for _, app := range []struct {
		name string
		addr netip.AddrPort
		bare bool // run h2spec straight to the app too, for comparison
	}{
		{"Go server", h2specApp(t), true},
		{"lenient server", lenientH2App(t, nil), false},
	} {
		t.Run(app.name, func(t *testing.T) {
			var bare h2specResult
			if app.bare {
				// The number docs/http2.md compares with.
				bare = runH2spec(t, bin, app.addr, 2*time.Second)
				t.Logf("h2spec straight to the %s: %d tests, %d passed, failed: %q", app.name, bare.total, bare.passed, bare.failures)
			}
			c := newChain(t, app.addr)
			// The mesh answers every test at once: the wait is for a
			// loaded machine.
			res := runH2spec(t, bin, mustAddrPort(t, c.outLn.Addr()), 5*time.Second)
			t.Logf("h2spec through the mesh: %d tests, %d passed, failed: %q", res.total, res.passed, res.failures)
			if res.total != 145 {
				t.Errorf("h2spec ran %d tests, want 145", res.total)
			}
			for _, f := range res.failures {
				if f == h2specInvalidPreface && slices.Contains(bare.failures, f) {
					continue
				}
				t.Errorf("h2spec through the mesh failed %q", f)
			}
			if t.Failed() {
				t.Logf("h2spec output:\n%s", res.output)
			}
		})
	}
}
