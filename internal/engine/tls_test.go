package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/failure"
)

// tlsFront serves upstream behind TLS with a certificate for 127.0.0.1
// signed by a CA of its own, speaking TLS versions up to maxVersion; it
// returns its address and the CA's PEM.
func tlsFront(t *testing.T, upstream string, maxVersion uint16) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "imap"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}, MinVersion: tls.VersionTLS10, MaxVersion: maxVersion}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveEach(t, ln, func(c net.Conn) {
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer up.Close()
		go io.Copy(up, c)
		io.Copy(c, up)
	})
	return addr, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
}

// A server behind a company's own CA is reached with that CA, not by
// turning verification off; an old server's TLS 1.1 only by the admin's
// explicit choice; and each failure says which flag to pass.
func TestTLSPerSide(t *testing.T) {
	up := memServer(t)
	modern, caPEM := tlsFront(t, up, tls.VersionTLS13)
	old, oldCA := tlsFront(t, up, tls.VersionTLS11)
	cred := Credentials{User: testUser, Password: testPass}
	for _, tc := range []struct {
		name string
		ep   Endpoint
		hint string // empty: the logon succeeds
	}{
		{"untrusted CA", Endpoint{Addr: modern}, "--source-ca-file"},
		{"company CA", Endpoint{Addr: modern, CA: caPEM}, ""},
		{"skip verify", Endpoint{Addr: modern, InsecureSkipVerify: true}, ""},
		{"TLS 1.1 server", Endpoint{Addr: old, CA: oldCA}, "--source-min-tls 1.0"},
		{"TLS 1.1 allowed", Endpoint{Addr: old, CA: oldCA, MinTLS: "1.0"}, ""},
		{"plain port", Endpoint{Addr: up}, "--source-security"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := Dial(ctx, failure.SideSource, tc.ep, cred)
			if tc.hint == "" {
				if err != nil {
					t.Fatalf("Dial() = %v", err)
				}
				s.Close()
				return
			}
			fe, ok := failure.As(err)
			if !ok || fe.Type != failure.TypeConnectFailed || !strings.Contains(fe.Hint, tc.hint) {
				t.Fatalf("Dial() = %v; want ConnectFailed with a hint naming %s", err, tc.hint)
			}
		})
	}
}
