package main

import (
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// fast are retry flags that keep a failing case short.
var fast = []string{"--interval=20ms", "--timeout=1s", "--attempt-timeout=500ms"}

// TestCheckHTTP runs `babelfish check http` against an httptest server.
func TestCheckHTTP(t *testing.T) {
	var flaky atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/page", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("<!doctype html><title>Babelfish</title><h1>GPUs</h1>"))
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "warming up", http.StatusServiceUnavailable)
	})
	// 503 twice, then 200: the check must retry.
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, _ *http.Request) {
		if flaky.Add(1) <= 2 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready"))
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	// The servers log (TLS handshake errors) through package log, which
	// `run` points at another test's output: keep them quiet.
	quiet := log.New(io.Discard, "", 0)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = quiet
	srv.Start()
	defer srv.Close()
	tlsSrv := httptest.NewUnstartedServer(mux)
	tlsSrv.Config.ErrorLog = quiet
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	ca := writeCA(t, tlsSrv)

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/healthz"
	ln.Close()

	tests := []struct {
		name    string
		args    []string
		wantOut string   // in stdout on success
		wantErr []string // all in the error; none: success
	}{
		{"healthz", []string{srv.URL + "/healthz", "--expect-body", "ok"}, "200 OK", nil},
		{"page title", []string{srv.URL + "/page", "--expect-body", "<title>Babelfish</title>", "--expect-body", "GPUs"}, "ok: GET " + srv.URL + "/page", nil},
		{"retries until ready", []string{srv.URL + "/flaky", "--expect-body", "ready"}, "attempt 3", nil},
		{"follows redirects", []string{srv.URL + "/moved", "--expect-body", "ok"}, "200 OK", nil},
		{"expected 404", []string{srv.URL + "/none", "--expect-status", "404"}, "404", nil},
		{"https with CA", []string{tlsSrv.URL + "/healthz", "--ca-file", ca}, "200 OK", nil},
		{"https skip verify", []string{tlsSrv.URL + "/healthz", "--insecure-skip-verify"}, "200 OK", nil},
		{"https unknown CA", []string{tlsSrv.URL + "/healthz", "--timeout=0"}, "", []string{"GET " + tlsSrv.URL, "certificate"}},
		{"wrong status", []string{srv.URL + "/down"}, "", []string{"GET " + srv.URL + "/down", "attempts", "503", "want 200", "warming up"}},
		{"body lacks substring", []string{srv.URL + "/page", "--expect-body", "<title>Other</title>", "--expect-body", "GPUs"}, "", []string{"lacks \"<title>Other</title>\"", "Babelfish"}},
		{"nothing listening", []string{closed}, "", []string{"GET " + closed, "connection refused"}},
		{"one attempt", []string{srv.URL + "/down", "--timeout=0"}, "", []string{"failed 1 attempt in"}},
		{"not a URL", []string{"localhost:8080/healthz"}, "", []string{"want an http:// or https:// URL"}},
		{"bad status flag", []string{srv.URL, "--expect-status", "1000"}, "", []string{"--expect-status 1000"}},
		{"bad interval", []string{srv.URL, "--interval", "0s"}, "", []string{"--interval"}},
		{"CA and skip verify", []string{tlsSrv.URL, "--ca-file", ca, "--insecure-skip-verify"}, "", []string{"--ca-file and --insecure-skip-verify"}},
		{"missing CA file", []string{tlsSrv.URL, "--ca-file", filepath.Join(t.TempDir(), "none.pem")}, "", []string{"--ca-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check", "http"}, fast...)
			out, err := run(t, append(args, tt.args...)...)
			checkResult(t, out, err, tt.wantOut, tt.wantErr)
		})
	}
}

// TestCheckGRPCHealth runs `babelfish check grpc-health` against an
// in-process gRPC health server, in plaintext and over TLS.
func TestCheckGRPCHealth(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("babelfish.v1.Translator", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("warming", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("later", healthpb.HealthCheckResponse_NOT_SERVING)
	plain := startGRPC(t, hs)

	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	defer tlsSrv.Close()
	ca := writeCA(t, tlsSrv)
	secure := startGRPC(t, hs, grpc.Creds(credentials.NewServerTLSFromCert(&tlsSrv.TLS.Certificates[0])))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	// "later" turns SERVING while the check retries.
	time.AfterFunc(200*time.Millisecond, func() { hs.SetServingStatus("later", healthpb.HealthCheckResponse_SERVING) })

	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr []string
	}{
		{"service serving", []string{plain, "--service", "babelfish.v1.Translator"}, "SERVING", nil},
		{"whole server", []string{plain}, "ok: grpc health of " + plain, nil},
		{"retries until serving", []string{plain, "--service", "later", "--timeout=5s"}, "SERVING", nil},
		{"expect not serving", []string{plain, "--service", "warming", "--expect", "NOT_SERVING"}, "NOT_SERVING", nil},
		{"expect unknown", []string{plain, "--service", "nope", "--expect", "SERVICE_UNKNOWN"}, "SERVICE_UNKNOWN", nil},
		{"TLS with CA", []string{secure, "--ca-file", ca, "--service", "babelfish.v1.Translator"}, "SERVING", nil},
		{"TLS skip verify", []string{secure, "--tls", "--insecure-skip-verify"}, "SERVING", nil},
		{"not serving", []string{plain, "--service", "warming"}, "", []string{plain, `service "warming"`, "NOT_SERVING, want SERVING"}},
		{"unknown service", []string{plain, "--service", "nope"}, "", []string{`service "nope"`, "SERVICE_UNKNOWN, want SERVING"}},
		{"plaintext to TLS", []string{secure, "--timeout=0"}, "", []string{secure, "Unavailable"}},
		{"TLS unknown CA", []string{secure, "--tls", "--timeout=0"}, "", []string{secure, "certificate"}},
		{"nothing listening", []string{closed}, "", []string{closed, "attempts", "Unavailable"}},
		{"bad expect", []string{plain, "--expect", "HEALTHY"}, "", []string{"--expect \"HEALTHY\""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"check", "grpc-health"}, fast...)
			out, err := run(t, append(args, tt.args...)...)
			checkResult(t, out, err, tt.wantOut, tt.wantErr)
		})
	}
}

func checkResult(t *testing.T, out string, err error, wantOut string, wantErr []string) {
	t.Helper()
	if len(wantErr) == 0 {
		if err != nil {
			t.Fatalf("err = %v; want success\n%s", err, out)
		}
		if !strings.Contains(out, wantOut) {
			t.Errorf("output lacks %q:\n%s", wantOut, out)
		}
		return
	}
	if err == nil {
		t.Fatalf("succeeded; want an error with %q\n%s", wantErr, out)
	}
	for _, w := range wantErr {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

func startGRPC(t *testing.T, hs *health.Server, opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, hs)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// writeCA writes the test server's certificate as a PEM CA bundle.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
