package serving

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	dir                string
	caPool             *x509.CertPool
	clientCert         tls.Certificate
	serverCrt, serverK string
	caFile             string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := &testPKI{dir: dir, caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	sder, skey := issue(2, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.serverCrt = write("server.pem", "CERTIFICATE", sder)
	skb, _ := x509.MarshalECPrivateKey(skey)
	p.serverK = write("server-key.pem", "EC PRIVATE KEY", skb)
	cder, ckey := issue(3, "client", x509.ExtKeyUsageClientAuth, nil)
	p.clientCert = tls.Certificate{Certificate: [][]byte{cder}, PrivateKey: ckey}
	return p
}

// TLS with client certificates and bearer tokens: each missing piece is
// refused; health stays open to probes that hold a certificate.
func TestMutualTLSAndTokens(t *testing.T) {
	st := newStore(t)
	promote(t, st, "s2ut", tinyModel(t, 3, 2), 1)
	pki := newPKI(t)
	tlsCfg, err := LoadTLS(pki.serverCrt, pki.serverK, pki.caFile)
	if err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef-token"
	ts := startServer(t, st, "s2ut", true, WithTLS(tlsCfg), WithAuthTokens(token))
	req := &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wavOf(t, speech(16000, 0.5, 1))}, TargetLanguage: "fr"}

	dial := func(cert bool) *grpc.ClientConn {
		c := &tls.Config{RootCAs: pki.caPool, MinVersion: tls.VersionTLS12}
		if cert {
			c.Certificates = []tls.Certificate{pki.clientCert}
		}
		conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(c)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	withToken := func(tok string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	good := babelfishv1.NewTranslatorClient(dial(true))
	for _, tc := range []struct {
		name   string
		client babelfishv1.TranslatorClient
		ctx    context.Context
		code   codes.Code
	}{
		{"certificate and token", good, withToken(token), codes.OK},
		{"no token", good, context.Background(), codes.Unauthenticated},
		{"wrong token", good, withToken("not-the-token-at-all"), codes.Unauthenticated},
		{"no client certificate", babelfishv1.NewTranslatorClient(dial(false)), withToken(token), codes.Unavailable},
		{"plaintext client", ts.client, withToken(token), codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.Translate(tc.ctx, req)
			if status.Code(err) != tc.code {
				t.Fatalf("Translate: %v, want %v", err, tc.code)
			}
		})
	}
	h, err := healthpb.NewHealthClient(dial(true)).Check(context.Background(), &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a token: %v, %v", h, err)
	}
	if _, err := New(st, "s2ut", WithAuthTokens("short")); err == nil {
		t.Fatal("a 5-character token was accepted")
	}
}
