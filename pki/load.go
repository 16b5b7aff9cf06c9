package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// LoadCertificate parses a PEM file holding one or more certificates, as
// kubeadm writes them, and returns them leaf first. Bytes that are not PEM,
// a truncated block or a block that is not a certificate are errors.
func LoadCertificate(data []byte) ([]*x509.Certificate, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file")
	}
	if !containsPEM(data) {
		return nil, errors.New("not PEM: no -----BEGIN line")
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	return certs, nil
}

// containsPEM reports whether data holds at least one complete PEM block.
func containsPEM(data []byte) bool {
	b, _ := pem.Decode(data)
	return b != nil
}

// LoadPrivateKey parses a PEM private key (PKCS#1, SEC 1 or PKCS#8).
func LoadPrivateKey(data []byte) (crypto.Signer, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file")
	}
	if !containsPEM(data) {
		return nil, errors.New("not PEM: no -----BEGIN line")
	}
	k, err := keyutil.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}

// LoadPublicKey parses the first public key of a PEM file (sa.pub).
func LoadPublicKey(data []byte) (crypto.PublicKey, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file")
	}
	if !containsPEM(data) {
		return nil, errors.New("not PEM: no -----BEGIN line")
	}
	keys, err := keyutil.ParsePublicKeysPEM(data)
	if err != nil {
		return nil, err
	}
	return keys[0], nil
}

// Kubeconfig is what the audit needs of a kubeconfig file: the cluster and
// the credentials of its current context.
type Kubeconfig struct {
	Context string
	Server  string
	// CAData is certificate-authority-data; CAFile is certificate-authority
	// when the file references a path instead.
	CAData []byte
	CAFile string
	// ClientCertData and ClientKeyData are client-certificate-data and
	// client-key-data; ClientCertFile and ClientKeyFile the paths used
	// instead (kubelet.conf after the kubelet's first rotation points at
	// /var/lib/kubelet/pki/kubelet-client-current.pem).
	ClientCertData []byte
	ClientKeyData  []byte
	ClientCertFile string
	ClientKeyFile  string
}

// LoadKubeconfig parses a kubeconfig file and resolves its current context
// (or its only context when none is current).
func LoadKubeconfig(data []byte) (*Kubeconfig, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file")
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, err
	}
	name := cfg.CurrentContext
	if name == "" {
		if len(cfg.Contexts) != 1 {
			return nil, fmt.Errorf("no current-context and %d contexts", len(cfg.Contexts))
		}
		for n := range cfg.Contexts {
			name = n
		}
	}
	ctx, ok := cfg.Contexts[name]
	if !ok || ctx == nil {
		return nil, fmt.Errorf("current-context %q is not defined", name)
	}
	cluster, ok := cfg.Clusters[ctx.Cluster]
	if !ok || cluster == nil {
		return nil, fmt.Errorf("context %q: cluster %q is not defined", name, ctx.Cluster)
	}
	user, ok := cfg.AuthInfos[ctx.AuthInfo]
	if !ok || user == nil {
		return nil, fmt.Errorf("context %q: user %q is not defined", name, ctx.AuthInfo)
	}
	return &Kubeconfig{
		Context:        name,
		Server:         cluster.Server,
		CAData:         cluster.CertificateAuthorityData,
		CAFile:         cluster.CertificateAuthority,
		ClientCertData: user.ClientCertificateData,
		ClientKeyData:  user.ClientKeyData,
		ClientCertFile: user.ClientCertificate,
		ClientKeyFile:  user.ClientKey,
	}, nil
}

// KeyType names a key the way kubeadm's encryptionAlgorithm does:
// RSA-2048, ECDSA-P256, ...
func KeyType(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil {
			return "RSA"
		}
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			return "ECDSA"
		}
		switch k.Curve.Params().Name {
		case "P-256":
			return "ECDSA-P256"
		case "P-384":
			return "ECDSA-P384"
		case "P-521":
			return "ECDSA-P521"
		}
		return "ECDSA-" + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// keyStrength judges a key: "" when acceptable (RSA 2048 or more, ECDSA
// P-256 or P-384, as kubeadm's encryptionAlgorithm offers), else why not.
func keyStrength(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < 2048 {
			return "RSA keys shorter than 2048 bits are too weak"
		}
		return ""
	case *ecdsa.PublicKey:
		switch KeyType(k) {
		case "ECDSA-P256", "ECDSA-P384":
			return ""
		}
		return "kubeadm issues ECDSA keys on P-256 or P-384 only"
	}
	return "kubeadm issues RSA or ECDSA keys only"
}

// publicKeyOf returns the public key of a signer, nil-safe.
func publicKeyOf(s crypto.Signer) crypto.PublicKey {
	if s == nil {
		return nil
	}
	return s.Public()
}

// samePublicKey compares two public keys.
func samePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && b != nil && e.Equal(b)
}
