package proxy

import (
	"bufio"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// waitAfter sends from inside the wait: an answer that comes at once, before
// the sender could have looked, still wakes it, every time (a lost wake-up
// would hang here until the deadline).
func TestWaitAfterSeesAnImmediateAnswer(t *testing.T) {
	c, peer := wrappedPair(t)
	go func() { // an echo that answers each byte as soon as it comes
		b := make([]byte, 1)
		for {
			if _, err := peer.Read(b); err != nil {
				return
			}
			if _, err := peer.Write(b); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	p := newPeeker(c)
	if !p.canWaitAfter() {
		t.Fatal("a socket: canWaitAfter false")
	}
	br := bufio.NewReader(c)
	for i := range 2000 {
		sent := false
		err := p.waitAfter(func() error {
			sent = true
			_, err := c.Write([]byte{byte(i)})
			return err
		})
		if err != nil || !sent {
			t.Fatalf("round %d: waitAfter = %v, sent %t", i, err, sent)
		}
		b, err := br.ReadByte()
		if err != nil || b != byte(i) {
			t.Fatalf("round %d: read %d, %v; want %d", i, b, err, byte(i))
		}
	}
}

// A send that fails is waitAfter's error, and nothing is waited for.
func TestWaitAfterReturnsTheSendError(t *testing.T) {
	c, _ := wrappedPair(t)
	p := newPeeker(c)
	errSend := errors.New("no")
	if err := p.waitAfter(func() error { return errSend }); !errors.Is(err, errSend) {
		t.Fatalf("waitAfter = %v, want the send's error", err)
	}
	// A later plain wait is not confused by the last send.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := p.wait(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("wait on a silent peer = %v, want a timeout", err)
	}
}

// The peer's end, and a write into a reset connection, come out of the wait.
func TestWaitAfterSeesTheEnd(t *testing.T) {
	t.Run("peer closes after the send", func(t *testing.T) {
		c, peer := wrappedPair(t)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		p := newPeeker(c)
		err := p.waitAfter(func() error {
			_, err := c.Write([]byte("x"))
			go func() { peer.Read(make([]byte, 1)); peer.Close() }()
			return err
		})
		if err != nil {
			t.Fatalf("waitAfter = %v", err)
		}
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("read after the wake-up: %v", err)
		}
	})
	t.Run("peer reset before the send", func(t *testing.T) {
		c, peer := wrappedPair(t)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		peer.SetLinger(0)
		peer.Close()
		time.Sleep(20 * time.Millisecond) // the reset arrives
		p := newPeeker(c)
		err := p.waitAfter(func() error {
			_, err := c.Write([]byte("x"))
			return err
		})
		var b [1]byte
		if err == nil {
			_, err = c.Read(b[:])
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("got %v, want the reset", err)
		}
	})
}
