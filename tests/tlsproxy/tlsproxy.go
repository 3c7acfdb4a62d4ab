// Package tlsproxy puts TLS with client certificates in front of a plain
// TCP server, for tests of clients that reach a secured Temporal cluster:
// a Proxy terminates TLS (offering HTTP/2, as gRPC wants), requires a
// client certificate signed by its test authority, and relays the bytes
// to the upstream server, the dev server's plain gRPC port.
package tlsproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ServerName is the only name the server certificate holds: a client
// dialing 127.0.0.1 must be told it (--tls-server-name), as with a
// cluster reached through an address its certificate does not name.
const ServerName = "temporal.mailmove.test"

// Files are the PEM files of a test PKI: one authority that signed a
// server certificate for ServerName and a client certificate, and a
// client certificate of another authority, which the proxy refuses.
type Files struct {
	CA                        string
	ServerCert, ServerKey     string
	ClientCert, ClientKey     string
	StrangerCert, StrangerKey string
}

// NewFiles makes a test PKI in a directory of t's that its cleanup removes.
func NewFiles(t testing.TB) Files {
	t.Helper()
	f, err := WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// WriteFiles makes a test PKI in dir. The keys are ECDSA P-256, the
// certificates valid from an hour ago for a day.
func WriteFiles(dir string) (Files, error) {
	f := Files{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
		StrangerCert: filepath.Join(dir, "stranger.pem"), StrangerKey: filepath.Join(dir, "stranger-key.pem"),
	}
	ca, caKey, err := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "mailmove test CA"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}, nil, nil, f.CA, "")
	if err != nil {
		return f, err
	}
	if _, _, err := issue(&x509.Certificate{Subject: pkix.Name{CommonName: ServerName}, DNSNames: []string{ServerName},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, caKey, f.ServerCert, f.ServerKey); err != nil {
		return f, err
	}
	client := &x509.Certificate{Subject: pkix.Name{CommonName: "mailmove worker"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, _, err := issue(client, ca, caKey, f.ClientCert, f.ClientKey); err != nil {
		return f, err
	}
	// A client certificate that is its own authority: well formed, but
	// signed by no one the proxy trusts.
	_, _, err = issue(&x509.Certificate{Subject: pkix.Name{CommonName: "stranger"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, nil, nil, f.StrangerCert, f.StrangerKey)
	return f, err
}

var serial atomic.Int64

// issue signs tmpl with parent's key (itself when parent is nil) and
// writes the certificate to certFile and, when keyFile is set, its key.
func issue(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano() + serial.Add(1))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	if keyFile != "" {
		b, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b}), 0o600); err != nil {
			return nil, nil, err
		}
	}
	return cert, key, nil
}

// drainTimeout bounds how long a refused connection is read before it is
// closed; see relay.
const drainTimeout = time.Second

// Proxy is a running TLS proxy.
type Proxy struct {
	// Addr is where it listens, 127.0.0.1:port.
	Addr     string
	upstream string
	ln       net.Listener

	accepted, refused atomic.Int64
	mu                sync.Mutex
	conns             map[net.Conn]struct{}
	wg                sync.WaitGroup
}

// Start starts a proxy to upstream with f's server certificate, requiring
// client certificates signed by f.CA; t's cleanup stops it.
func Start(t testing.TB, upstream string, f Files) *Proxy {
	t.Helper()
	p, err := Listen(upstream, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Listen is Start without a test: Close stops it.
func Listen(upstream string, f Files) (*Proxy, error) {
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("tlsproxy: no certificate in " + f.CA)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// gRPC refuses a TLS server that does not choose HTTP/2.
		NextProtos: []string{"h2"},
		MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), upstream: upstream, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Accepted counts the connections whose client certificate was accepted;
// Refused those whose handshake failed (no certificate, one of another
// authority, or no TLS at all).
func (p *Proxy) Accepted() int { return int(p.accepted.Load()) }

// Refused: see Accepted.
func (p *Proxy) Refused() int { return int(p.refused.Load()) }

// Close stops listening, cuts every connection and waits for them.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.relay(c.(*tls.Conn))
		}()
	}
}

// track registers c for Close; false once the proxy is closing.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// relay completes the handshake, then copies bytes both ways until either
// side closes.
func (p *Proxy) relay(c *tls.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.refused.Add(1)
		// A TLS 1.3 client has sent its first request by now: read it
		// for a moment, so that it reads the alert rather than a reset.
		c.NetConn().SetReadDeadline(time.Now().Add(drainTimeout))
		io.Copy(io.Discard, c.NetConn())
		return
	}
	p.accepted.Add(1)
	up, err := net.DialTimeout("tcp", p.upstream, 10*time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}
