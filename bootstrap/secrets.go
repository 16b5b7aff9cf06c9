package bootstrap

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
)

// NewCertificateKey returns a key for kubeadm's upload-certs: 32 random
// bytes, hex encoded, as `kubeadm certs certificate-key` prints it.
func NewCertificateKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("certificate key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

const tokenChars = "0123456789abcdefghijklmnopqrstuvwxyz"

// TokenPattern is the format of a bootstrap token: [a-z0-9]{6}.[a-z0-9]{16}.
var TokenPattern = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// NewToken returns a random bootstrap token "abcdef.0123456789abcdef".
func NewToken() (string, error) {
	b := make([]byte, 22)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("bootstrap token: %w", err)
	}
	out := make([]byte, 0, 23)
	for i, c := range b {
		// Rejection sampling: 252 = 7*36, so c%36 is uniform below it.
		for c >= 252 {
			var r [1]byte
			if _, err := rand.Read(r[:]); err != nil {
				return "", fmt.Errorf("bootstrap token: %w", err)
			}
			c = r[0]
		}
		if i == 6 {
			out = append(out, '.')
		}
		out = append(out, tokenChars[int(c)%len(tokenChars)])
	}
	return string(out), nil
}

// CAHash returns kubeadm's discovery hash of a CA certificate: "sha256:"
// and the hex SHA-256 of its DER SubjectPublicKeyInfo.
func CAHash(caPEM []byte) (string, error) {
	for {
		var blk *pem.Block
		blk, caPEM = pem.Decode(caPEM)
		if blk == nil {
			return "", errors.New("ca.crt holds no PEM certificate")
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", fmt.Errorf("ca.crt: %w", err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		return "sha256:" + hex.EncodeToString(sum[:]), nil
	}
}
