package exporter

import (
	"crypto/tls"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// tlsCollectorCert returns the self-signed certificate httptest uses (valid for
// 127.0.0.1) and a CA file that trusts it.
func tlsCollectorCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.StartTLS()
	cert := srv.TLS.Certificates[0]
	srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	return cert, caFile
}

func TestTLSWithCAFile(t *testing.T) {
	cert, caFile := tlsCollectorCert(t)
	batch := hops(2, podResource("a", "a-1"), podResource("b", "b-1"))

	t.Run("grpc", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f := &fakeGRPC{addr: l.Addr().String()}
		srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
		coltracepb.RegisterTraceServiceServer(srv, f)
		go srv.Serve(l)
		t.Cleanup(srv.Stop)

		// host:port without a scheme means TLS unless Insecure.
		s := exportAll(t, fastRetry(Config{Endpoint: f.addr, CAFile: caFile}), batch)
		if s.Exported != 8 || len(f.got()) != 1 {
			t.Errorf("stats %+v: want 8 spans over TLS", s)
		}
		// Without the CA the handshake fails: an UNAVAILABLE that exhausts retries.
		cfg := fastRetry(Config{Endpoint: "https://" + f.addr})
		cfg.Retry.MaxElapsedTime = 100 * time.Millisecond
		if s := exportAll(t, cfg, batch); s.Dropped.RetriesExhausted != 8 {
			t.Errorf("untrusted certificate: stats %+v", s)
		}
	})
	t.Run("http", func(t *testing.T) {
		f := &fakeHTTP{}
		srv := httptest.NewUnstartedServer(f.handler(nil))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		s := exportAll(t, fastRetry(Config{Protocol: ProtocolHTTPProtobuf, Endpoint: srv.URL, CAFile: caFile}), batch)
		if s.Exported != 8 || len(f.got()) != 1 {
			t.Errorf("stats %+v: want 8 spans over TLS", s)
		}
	})
}
