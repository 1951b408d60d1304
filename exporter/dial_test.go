package exporter

import (
	"context"
	"io"
	"net"
	"testing"
)

// rawDialer's connections are the rawsock wrapper (raw writes) and still
// behave as TCP connections: bytes both ways, half-close.
func TestRawDialerWrapsTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo until the client half-closes
	}()
	c, err := rawDialer(&net.Dialer{})(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, plain := c.(*net.TCPConn); plain {
		t.Fatal("rawDialer returned a plain *net.TCPConn")
	}
	if _, err := c.Write([]byte("batch")); err != nil {
		t.Fatal(err)
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("the wrapped connection lost CloseWrite")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "batch" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if _, err := rawDialer(&net.Dialer{})(context.Background(), "tcp", "127.0.0.1:1"); err == nil {
		t.Error("a refused dial returned no error")
	}
}
