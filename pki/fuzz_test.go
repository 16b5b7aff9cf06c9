package pki

import (
	"testing"
	"time"
)

// Seeds: a real certificate and kubeconfig, and broken ones.
func fuzzSeeds(f *testing.F) {
	root := f.TempDir()
	c := defaultGen("cp1", "10.77.0.11")
	c.ECDSA = true
	genPKI(f, root, c)
	for _, p := range []string{"etc/kubernetes/pki/ca.crt", "etc/kubernetes/pki/etcd/server.crt", "etc/kubernetes/pki/sa.pub", "etc/kubernetes/admin.conf", "etc/kubernetes/kubelet.conf"} {
		f.Add(readSeed(f, root+"/"+p))
	}
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("apiVersion: v1\nkind: Config\nclusters: [{name: a, cluster: {server: x, certificate-authority-data: AAAA}}]\ncontexts: [{name: c, context: {cluster: a, user: u}}]\nusers: [{name: u, user: {client-certificate: /nonexistent}}]\ncurrent-context: c\n"))
	f.Add([]byte("{\"kind\": \"Config\", \"current-context\": \"\"}"))
}

func readSeed(f *testing.F, p string) []byte {
	f.Helper()
	b, err := readFileForSeed(p)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzLoadCertificate: no input makes the certificate and key loaders, or
// the judgement of what they return, panic.
func FuzzLoadCertificate(f *testing.F) {
	fuzzSeeds(f)
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := LoadCertificate(data)
		if err == nil {
			if len(certs) == 0 {
				t.Fatal("no certificate and no error")
			}
			c := certs[0]
			_ = KeyType(c.PublicKey)
			_ = keyStrength(c.PublicKey)
			_ = hasSAN(c, "localhost")
			_ = signedBy(c, c)
			_ = Residual(c.NotAfter.Sub(now))
		}
		if k, err := LoadPrivateKey(data); err == nil {
			_ = KeyType(k.Public())
		}
		if p, err := LoadPublicKey(data); err == nil {
			_ = KeyType(p)
		}
	})
}

// FuzzLoadKubeconfig: no input makes the kubeconfig loader panic.
func FuzzLoadKubeconfig(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		kc, err := LoadKubeconfig(data)
		if err != nil {
			return
		}
		_ = serverHost(kc.Server)
		if certs, err := LoadCertificate(kc.ClientCertData); err == nil {
			_ = KeyType(certs[0].PublicKey)
		}
		_, _ = LoadCertificate(kc.CAData)
		_, _ = LoadPrivateKey(kc.ClientKeyData)
	})
}
