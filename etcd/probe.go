package etcd

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/kbootstrap/kbootstrap/node"
)

// ProbeOutcome is what a probe connection met.
type ProbeOutcome int

// The outcomes of a probe.
const (
	// Refused: the server closed the connection or sent a TLS alert.
	Refused ProbeOutcome = iota
	// Accepted: the server answered the HTTP request.
	Accepted
	// Inconclusive: the probe could not tell (dial failed, timeout).
	Inconclusive
)

func (o ProbeOutcome) String() string {
	switch o {
	case Refused:
		return "refused"
	case Accepted:
		return "accepted"
	}
	return "inconclusive"
}

// ProbeResult is one probe.
type ProbeResult struct {
	Outcome ProbeOutcome
	Detail  string // the HTTP status line, the TLS alert, or the error
}

// ProbeTLS connects to hostPort through n with TLS and the given client
// certificate (nil for none), without verifying the server (the question is
// whether the server lets the client in, not who the server is), then sends
// GET /version. TLS 1.3 reports a refused client certificate only after the
// handshake, hence the request.
func ProbeTLS(ctx context.Context, n node.Node, hostPort, serverName string, cert *tls.Certificate) ProbeResult {
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // probing the server's client authentication, not its identity
	if cert != nil {
		c := *cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return probe(ctx, n, hostPort, func(conn net.Conn) net.Conn { return tls.Client(conn, cfg) })
}

// ProbePlainHTTP sends GET /version in clear text to hostPort through n.
func ProbePlainHTTP(ctx context.Context, n node.Node, hostPort string) ProbeResult {
	return probe(ctx, n, hostPort, func(conn net.Conn) net.Conn { return conn })
}

func probe(ctx context.Context, n node.Node, hostPort string, wrap func(net.Conn) net.Conn) ProbeResult {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := n.Dial(ctx, "tcp", hostPort)
	if err != nil {
		return ProbeResult{Inconclusive, fmt.Sprintf("dial %s from node %s: %v", hostPort, n.Name(), err)}
	}
	// SSH channels have no deadlines: close the connection when ctx ends.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	defer raw.Close()
	conn := wrap(raw)
	if tc, ok := conn.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			return refusedOr(ctx, "TLS handshake: ", err)
		}
	}
	req := "GET /version HTTP/1.1\r\nHost: " + hostPort + "\r\nUser-Agent: kbootstrap-etcd-audit\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return refusedOr(ctx, "write: ", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.LimitReader(conn, 64<<10)), nil)
	if err != nil {
		return refusedOr(ctx, "", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	detail := strings.TrimSpace(resp.Proto + " " + resp.Status + " " + string(body))
	if resp.StatusCode/100 == 2 {
		return ProbeResult{Accepted, detail}
	}
	// An HTTP answer that is not a success (e.g. Go's "client sent an HTTP
	// request to an HTTPS server") still refused the request.
	return ProbeResult{Refused, detail}
}

func refusedOr(ctx context.Context, prefix string, err error) ProbeResult {
	if ctx.Err() != nil {
		return ProbeResult{Inconclusive, prefix + "no answer within the probe's deadline"}
	}
	msg := err.Error()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "connection closed by the server"
	}
	return ProbeResult{Refused, prefix + msg}
}

// MintClientCert signs a short-lived client certificate (clientAuth, 10
// minutes) with the CA in caPEM/caKeyPEM. It only ever lives in memory.
func MintClientCert(caPEM, caKeyPEM []byte, cn string) (*tls.Certificate, error) {
	cas, err := ParseCertsPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	k, err := keyutil.ParsePrivateKeyPEM(caKeyPEM)
	if err != nil {
		return nil, errors.New("parse CA key: not a PEM private key") // never echo key material
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key cannot sign")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"system:masters"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(10 * time.Minute),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, cas[0], &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("sign probe certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ParseCertsPEM returns the certificates of a PEM bundle (at least one).
func ParseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}
