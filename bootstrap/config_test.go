package bootstrap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/golden"
)

var testCluster = ClusterParams{
	Name: "lab", KubernetesVersion: "v1.34.4", ControlPlaneEndpoint: "10.91.0.11:6443",
	PodSubnet: "10.244.0.0/16", ServiceSubnet: "10.96.0.0/12", CgroupDriver: "cgroupfs",
}

const (
	testToken = "abcdef.0123456789abcdef"
	testKey   = "0000000000000000000000000000000000000000000000000000000000000000"
)

func TestConfigGolden(t *testing.T) {
	patched := testCluster
	patched.CertificateValidity = "8760h0m0s"
	patched.Patches = []string{"apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  certSANs: [api.example.org]\n---\nkind: KubeletConfiguration\nmaxPods: 50\n"}
	for _, tc := range []struct {
		name string
		gen  func() ([]byte, error)
	}{
		{"init.yaml", func() ([]byte, error) {
			return InitConfig(testCluster, NodeParams{Name: "cp1", Address: "10.91.0.12"}, InitParams{Token: testToken, CertificateKey: testKey})
		}},
		{"init-patched.yaml", func() ([]byte, error) {
			return InitConfig(patched, NodeParams{Name: "cp1", Address: "10.91.0.12"}, InitParams{Token: testToken, CertificateKey: testKey})
		}},
		{"join-control-plane.yaml", func() ([]byte, error) {
			return JoinConfig(testCluster, NodeParams{Name: "cp2", Address: "10.91.0.13"}, JoinParams{Endpoint: "10.91.0.11:6443", Token: testToken, CACertHash: "sha256:00ff", ControlPlane: true, CertificateKey: testKey})
		}},
		{"join-worker.yaml", func() ([]byte, error) {
			return JoinConfig(patched, NodeParams{Name: "worker1", Address: "10.91.0.15"}, JoinParams{Endpoint: "10.91.0.11:6443", Token: testToken, CACertHash: "sha256:00ff"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.gen()
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tc.name, got)
		})
	}
}

func TestConfigPatchErrors(t *testing.T) {
	c := testCluster
	c.Patches = []string{"apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n"}
	if _, err := InitConfig(c, NodeParams{Name: "cp1", Address: "10.0.0.1"}, InitParams{}); err == nil || !strings.Contains(err.Error(), "v1beta4") {
		t.Errorf("a v1beta3 patch: %v", err)
	}
	c.Patches = []string{"foo: bar\n"}
	if _, err := InitConfig(c, NodeParams{Name: "cp1", Address: "10.0.0.1"}, InitParams{}); err == nil {
		t.Error("a patch without kind was accepted")
	}
}

func TestSecrets(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := NewToken()
		if err != nil || !TokenPattern.MatchString(tok) || seen[tok] {
			t.Fatalf("token %q: %v", tok, err)
		}
		seen[tok] = true
		key, err := NewCertificateKey()
		if err != nil || len(key) != 64 {
			t.Fatalf("key %q: %v", key, err)
		}
		if _, err := hex.DecodeString(key); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCAHash(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	sum := sha256.Sum256(spki)
	got, err := CAHash(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	if err != nil || got != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("CAHash = %q, %v", got, err)
	}
	if _, err := CAHash([]byte("nope")); err == nil {
		t.Error("no PEM accepted")
	}
}
