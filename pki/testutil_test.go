package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// genConfig describes a control plane whose PKI genPKI writes the way kubeadm
// init phase certs all / kubeconfig all / control-plane / etcd local would.
type genConfig struct {
	NodeName      string
	Address       string
	ServiceSubnet string
	DNSDomain     string
	Endpoint      string // controlPlaneEndpoint host:port
	Version       string
	ECDSA         bool
	Validity      time.Duration // leaves
	CAValidity    time.Duration
	ExternalEtcd  bool
	// CAsFrom is the root of another node whose CAs and sa key pair are
	// reused, as kubeadm join --control-plane copies them.
	CAsFrom string
	// LegacyAdmin issues admin.conf and apiserver-kubelet-client with
	// O=system:masters, as kubeadm before 1.29.
	LegacyAdmin  bool
	NoSuperAdmin bool
}

func defaultGen(name, addr string) genConfig {
	return genConfig{NodeName: name, Address: addr, ServiceSubnet: "10.96.0.0/12", DNSDomain: "cluster.local",
		Endpoint: "10.77.0.100:6443", Version: "v1.34.4", Validity: 365 * 24 * time.Hour, CAValidity: 10 * 365 * 24 * time.Hour}
}

// kdir is a root's /etc/kubernetes.
func kdir(root string) string { return filepath.Join(root, "etc", "kubernetes") }
func pdir(root string) string { return filepath.Join(kdir(root), "pki") }

func newKey(t testing.TB, ec bool) crypto.Signer {
	t.Helper()
	if ec {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	b, err := keyutil.MarshalPrivateKeyToPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pubPEM(t testing.TB, k crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writeFile(t testing.TB, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes data over path keeping its mode.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, data, fi.Mode().Perm())
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t testing.TB, cn string, ec bool, notBefore time.Time, validity time.Duration) (*x509.Certificate, crypto.Signer) {
	k := newKey(t, ec)
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notBefore.Add(validity),
		KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	return sign(t, tmpl, tmpl, k.Public(), k), k
}

// loadPair reads base.crt and base.key of a PKI directory.
func loadPair(t testing.TB, dir, base string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, base+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := LoadCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := os.ReadFile(filepath.Join(dir, base+".key"))
	if err != nil {
		return cs[0], nil
	}
	k, err := LoadPrivateKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0], k
}

// genPKI writes a kubeadm-like control plane under root/etc/kubernetes.
func genPKI(t testing.TB, root string, c genConfig) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	p := pdir(root)
	type ca struct {
		cert *x509.Certificate
		key  crypto.Signer
	}
	cas := map[string]ca{}
	caList := []struct{ base, cn string }{{"ca", "kubernetes"}, {"front-proxy-ca", "front-proxy-ca"}}
	if !c.ExternalEtcd {
		caList = append(caList, struct{ base, cn string }{"etcd/ca", "etcd-ca"})
	}
	for _, x := range caList {
		if c.CAsFrom != "" {
			for _, ext := range []string{".crt", ".key"} {
				b, err := os.ReadFile(filepath.Join(pdir(c.CAsFrom), x.base+ext))
				if err != nil {
					t.Fatal(err)
				}
				mode := fs.FileMode(0o644)
				if ext == ".key" {
					mode = 0o600
				}
				writeFile(t, filepath.Join(p, x.base+ext), b, mode)
			}
			cert, key := loadPair(t, p, x.base)
			cas[x.base] = ca{cert, key}
			continue
		}
		cert, key := newCA(t, x.cn, c.ECDSA, now, c.CAValidity)
		writeFile(t, filepath.Join(p, x.base+".crt"), certPEM(cert.Raw), 0o644)
		writeFile(t, filepath.Join(p, x.base+".key"), keyPEM(t, key), 0o600)
		cas[x.base] = ca{cert, key}
	}
	if c.CAsFrom != "" {
		for _, f := range []string{"sa.key", "sa.pub"} {
			b, err := os.ReadFile(filepath.Join(pdir(c.CAsFrom), f))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(p, f), b, 0o600)
		}
	} else {
		sa := newKey(t, false)
		pub := pubPEM(t, sa.Public())
		writeFile(t, filepath.Join(p, "sa.key"), keyPEM(t, sa), 0o600)
		writeFile(t, filepath.Join(p, "sa.pub"), pub, 0o600)
	}

	addr := net.ParseIP(c.Address)
	svc, err := firstServiceIP(c.ServiceSubnet)
	if err != nil {
		t.Fatal(err)
	}
	cpeHost := endpointHost(c.Endpoint)
	apiDNS := []string{c.NodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + c.DNSDomain}
	apiIPs := []net.IP{svc, addr}
	if ip := net.ParseIP(cpeHost); ip != nil {
		apiIPs = append(apiIPs, ip)
	} else {
		apiDNS = append(apiDNS, cpeHost)
	}
	etcdDNS := []string{c.NodeName, "localhost"}
	etcdIPs := []net.IP{addr, net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	adminOrg := []string{groupClusterAdmins}
	if c.LegacyAdmin {
		adminOrg = []string{groupMasters}
	}
	leaves := []struct {
		base, ca, cn string
		o            []string
		usage        []x509.ExtKeyUsage
		dns          []string
		ips          []net.IP
		etcd         bool
	}{
		{"apiserver", "ca", "kube-apiserver", nil, usageServer, apiDNS, apiIPs, false},
		{"apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", adminOrg, usageClient, nil, nil, false},
		{"front-proxy-client", "front-proxy-ca", "front-proxy-client", nil, usageClient, nil, nil, false},
		{"etcd/server", "etcd/ca", c.NodeName, nil, usageBoth, etcdDNS, etcdIPs, true},
		{"etcd/peer", "etcd/ca", c.NodeName, nil, usageBoth, etcdDNS, etcdIPs, true},
		{"etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", nil, usageClient, nil, nil, true},
		{"apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", nil, usageClient, nil, nil, true},
	}
	for _, l := range leaves {
		if l.etcd && c.ExternalEtcd {
			continue
		}
		issuer := cas[l.ca]
		k := newKey(t, c.ECDSA)
		tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: l.cn, Organization: l.o}, DNSNames: l.dns, IPAddresses: l.ips,
			NotBefore: issuer.cert.NotBefore, NotAfter: now.Add(c.Validity), KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
			ExtKeyUsage: l.usage, BasicConstraintsValid: true}
		cert := sign(t, tmpl, issuer.cert, k.Public(), issuer.key)
		writeFile(t, filepath.Join(p, l.base+".crt"), certPEM(cert.Raw), 0o644)
		writeFile(t, filepath.Join(p, l.base+".key"), keyPEM(t, k), 0o600)
	}

	cluster := cas["ca"]
	server := "https://" + c.Endpoint
	local := "https://" + net.JoinHostPort(c.Address, "6443")
	kcs := []struct {
		file, cn, server string
		o                []string
	}{
		{"admin.conf", "kubernetes-admin", server, adminOrg},
		{"super-admin.conf", "kubernetes-super-admin", server, []string{groupMasters}},
		{"controller-manager.conf", "system:kube-controller-manager", local, nil},
		{"scheduler.conf", "system:kube-scheduler", local, nil},
		{"kubelet.conf", "system:node:" + c.NodeName, server, []string{groupNodes}},
	}
	for _, kc := range kcs {
		if kc.file == "super-admin.conf" && c.NoSuperAdmin {
			continue
		}
		k := newKey(t, c.ECDSA)
		tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: kc.cn, Organization: kc.o},
			NotBefore: cluster.cert.NotBefore, NotAfter: now.Add(c.Validity), KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
			ExtKeyUsage: usageClient, BasicConstraintsValid: true}
		cert := sign(t, tmpl, cluster.cert, k.Public(), cluster.key)
		writeKubeconfig(t, filepath.Join(kdir(root), kc.file), kc.server, certPEM(cluster.cert.Raw), certPEM(cert.Raw), keyPEM(t, k), kc.cn)
	}

	m := filepath.Join(kdir(root), "manifests")
	writeFile(t, filepath.Join(m, "kube-apiserver.yaml"), []byte(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: %s:6443
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=%s
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --etcd-servers=https://127.0.0.1:2379
    - --service-cluster-ip-range=%s
    image: registry.k8s.io/kube-apiserver:%s
    name: kube-apiserver
`, c.Address, c.Address, c.ServiceSubnet, c.Version)), 0o600)
	if !c.ExternalEtcd {
		writeFile(t, filepath.Join(m, "etcd.yaml"), []byte(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://%s:2379
    - --name=%s
    image: registry.k8s.io/etcd:3.6.5-0
    name: etcd
`, c.Address, c.NodeName)), 0o600)
	}
	genKubeletServing(t, root, c.NodeName, time.Now().Add(-time.Hour), 365*24*time.Hour)
}

// genKubeletServing writes the self-signed serving certificate a kubelet
// writes at its first start (cert.GenerateSelfSignedCertKey): a CA
// "<host>-ca@<time>" and, signed by it, "<host>@<time>" for the host name;
// kubelet.crt holds both.
func genKubeletServing(t testing.TB, root, host string, notBefore time.Time, validity time.Duration) {
	t.Helper()
	at := notBefore.Unix()
	ca, caKey := newCA(t, fmt.Sprintf("%s-ca@%d", host, at), false, notBefore, validity)
	k := newKey(t, false)
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: fmt.Sprintf("%s@%d", host, at)}, NotBefore: notBefore, NotAfter: notBefore.Add(validity),
		KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, DNSNames: []string{host}}
	c := sign(t, tmpl, ca, k.Public(), caKey)
	dir := filepath.Join(root, "var", "lib", "kubelet", "pki")
	writeFile(t, filepath.Join(dir, "kubelet.crt"), append(certPEM(c.Raw), certPEM(ca.Raw)...), 0o644)
	writeFile(t, filepath.Join(dir, "kubelet.key"), keyPEM(t, k), 0o600)
}

func writeKubeconfig(t testing.TB, path, server string, caPEM, certPEM, keyPEM []byte, user string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubernetes"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	ctx := user + "@kubernetes"
	cfg.Contexts[ctx] = &clientcmdapi.Context{Cluster: "kubernetes", AuthInfo: user}
	cfg.CurrentContext = ctx
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b, 0o600)
}

// editKubeconfig rewrites a kubeconfig's current user and cluster.
func editKubeconfig(t testing.TB, path string, edit func(cl *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo)) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	edit(cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo])
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, b)
}

// reissue re-signs the certificate base of pki directory p with the key of
// the CA signerBase after mutate changed its template; key, when not nil,
// replaces the certificate's key pair.
func reissue(t testing.TB, p, base, signerBase string, mutate func(*x509.Certificate), key crypto.Signer) {
	t.Helper()
	leaf, leafKey := loadPair(t, p, base)
	caCert, caKey := loadPair(t, p, signerBase)
	tmpl := *leaf
	tmpl.SignatureAlgorithm = 0
	tmpl.RawSubject = nil // else CreateCertificate keeps the old subject
	tmpl.SerialNumber = serial(t)
	if mutate != nil {
		mutate(&tmpl)
	}
	if key != nil {
		leafKey = key
		replaceFile(t, filepath.Join(p, base+".key"), keyPEM(t, key))
	}
	c := sign(t, &tmpl, caCert, leafKey.Public(), caKey)
	replaceFile(t, filepath.Join(p, base+".crt"), certPEM(c.Raw))
}

// copyTree copies a directory tree keeping modes.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, fi.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, b, fi.Mode().Perm()); err != nil {
			return err
		}
		return os.Chmod(target, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rootedNode is a node whose file system is a directory of this machine: a
// stand-in for an SSH connection in unit tests (the lab tests use real ones).
type rootedNode struct {
	name, root string
	local      *node.Local
}

var _ node.Node = (*rootedNode)(nil)

func (r *rootedNode) path(p string) string { return filepath.Join(r.root, filepath.FromSlash(p)) }
func (r *rootedNode) Name() string         { return r.name }
func (r *rootedNode) Privileged() bool     { return true }
func (r *rootedNode) Run(context.Context, string, ...node.ExecOption) (node.Result, error) {
	return node.Result{}, errors.New("rootedNode: no commands")
}
func (r *rootedNode) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return r.local.ReadFile(ctx, r.path(p))
}
func (r *rootedNode) Stat(ctx context.Context, p string) (node.FileInfo, error) {
	return r.local.Stat(ctx, r.path(p))
}
func (r *rootedNode) ReadDir(ctx context.Context, p string) ([]node.FileInfo, error) {
	return r.local.ReadDir(ctx, r.path(p))
}
func (r *rootedNode) WriteFile(ctx context.Context, p string, rd io.Reader, o node.WriteOptions) error {
	return r.local.WriteFile(ctx, r.path(p), rd, o)
}
func (r *rootedNode) Remove(ctx context.Context, p string) error {
	return r.local.Remove(ctx, r.path(p))
}
func (r *rootedNode) Dial(ctx context.Context, n, a string) (net.Conn, error) {
	return r.local.Dial(ctx, n, a)
}

// fakeConnector connects inventory nodes to rooted directories; a node with
// no root fails to connect.
type fakeConnector map[string]string

func (f fakeConnector) Connect(_ context.Context, n inventory.Node) (node.Node, error) {
	root, ok := f[n.Name]
	if !ok {
		return nil, fmt.Errorf("dial tcp %s:22: connect: connection refused", n.Address)
	}
	return &rootedNode{name: n.Name, root: root, local: node.NewLocal(n.Name, nil)}, nil
}

// localOpts audits root's /etc/kubernetes in local mode.
func localOpts(root string) Options {
	return Options{Local: &LocalSource{PKIDir: pdir(root), KubeconfigDir: kdir(root), ManifestsDir: filepath.Join(kdir(root), "manifests")}}
}

func fails(r *Result) []string {
	var out []string
	for _, f := range r.Findings.Findings {
		if f.Severity == "fail" {
			out = append(out, fmt.Sprintf("%s %s %s: %s", f.Node, f.Check, f.File, f.Message))
		}
	}
	return out
}

func dump(r *Result) string {
	var b strings.Builder
	for _, f := range r.Findings.Findings {
		if f.Severity != "ok" {
			fmt.Fprintf(&b, "  %s %s %s %s: %s\n", f.Severity, f.Node, f.Check, f.File, f.Message)
		}
	}
	return b.String()
}

func readFileForSeed(p string) ([]byte, error) { return os.ReadFile(p) }
