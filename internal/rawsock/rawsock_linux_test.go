package rawsock

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair returns a wrapped connection connected over loopback to a plain
// *net.TCPConn.
func pair(t *testing.T) (*conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := (<-accepted).(*net.TCPConn)
	s, ok := Wrap(c).(*conn)
	if !ok {
		t.Fatalf("Wrap(%T) did not wrap it", c)
	}
	t.Cleanup(func() { s.Close(); peer.Close() })
	return s, peer
}

// TestSockMovesBytesBothWays: 8 MB each way at once, far more than the socket
// buffers hold, so writes meet EAGAIN and wait on the poller mid-buffer.
func TestSockMovesBytesBothWays(t *testing.T) {
	s, peer := pair(t)
	out, back := make([]byte, 8<<20), make([]byte, 8<<20)
	rand.Read(out)
	rand.Read(back)
	errc := make(chan error, 3)
	go func() { // the peer echoes nothing: it sends its own and reads ours
		_, err := peer.Write(back)
		errc <- err
	}()
	var gotPeer []byte
	go func() {
		var err error
		gotPeer, err = io.ReadAll(io.LimitReader(peer, int64(len(out))))
		errc <- err
	}()
	go func() {
		n, err := s.Write(out)
		if err == nil && n != len(out) {
			err = io.ErrShortWrite
		}
		errc <- err
	}()
	got, err := io.ReadAll(io.LimitReader(s, int64(len(back))))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, back) || !bytes.Equal(gotPeer, out) {
		t.Fatal("bytes differ after the round trip")
	}
}

// TestSockErrorsAreTCPConns: the proxy tells ends, timeouts, closes and
// resets apart by their errors; a sock must report each as net.TCPConn does.
func TestSockErrorsAreTCPConns(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		s, _ := pair(t)
		s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := s.Read(make([]byte, 10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past the deadline: %v, want a timeout", err)
		}
		s.SetReadDeadline(time.Time{})
	})
	t.Run("end", func(t *testing.T) {
		s, peer := pair(t)
		peer.Write([]byte("last"))
		peer.CloseWrite()
		b, err := io.ReadAll(s)
		if err != nil || string(b) != "last" {
			t.Fatalf("read to the end: %q, %v", b, err)
		}
		if n, err := s.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("read after the end: %d, %v, want io.EOF", n, err)
		}
	})
	t.Run("closed while reading", func(t *testing.T) {
		s, _ := pair(t)
		errc := make(chan error, 1)
		go func() {
			_, err := s.Read(make([]byte, 1))
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		s.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read on a closed conn: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end a waiting Read")
		}
	})
	t.Run("reset", func(t *testing.T) {
		s, peer := pair(t)
		peer.SetLinger(0)
		peer.Close()
		_, err := s.Read(make([]byte, 1))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read after a reset: %v, want ECONNRESET", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" || oe.Addr == nil {
			t.Fatalf("read error %#v is not a net.OpError of read with addresses", err)
		}
		// Writing to the reset connection fails; it must not kill the
		// process with SIGPIPE either.
		var werr error
		for range 10 {
			if _, werr = s.Write([]byte("x")); werr != nil {
				break
			}
		}
		if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
			t.Fatalf("write after a reset: %v, want EPIPE or ECONNRESET", werr)
		}
	})
}
