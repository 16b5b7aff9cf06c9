package pki

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/report"
)

// defect is a planted fault and the finding it must give.
type defect struct {
	name  string
	apply func(t *testing.T, root string)
	check string
	file  string
	sev   report.Severity // fail unless set
	// also lists other files that may fail because of the same fault.
	also []string
	// defaultThresholds: the defect assumes the default warn/fail windows.
	defaultThresholds bool
}

func defects() []defect {
	return []defect{
		{name: "leaf signed by the wrong CA", check: CheckCertSigner, file: "apiserver.crt", apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "apiserver", "front-proxy-ca", nil, nil)
		}},
		{name: "wrong O", check: CheckCertSubject, file: "apiserver-kubelet-client.crt", apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "apiserver-kubelet-client", "ca", func(c *x509.Certificate) { c.Subject.Organization = []string{"kubeadm:not-admins"} }, nil)
		}},
		{name: "expired", check: CheckCertExpiry, file: "front-proxy-client.crt", apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "front-proxy-client", "front-proxy-ca", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Hour) }, nil)
		}},
		{name: "not yet valid", check: CheckCertExpiry, file: "etcd/healthcheck-client.crt", apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "etcd/healthcheck-client", "etcd/ca", func(c *x509.Certificate) { c.NotBefore = time.Now().Add(24 * time.Hour) }, nil)
		}},
		{name: "expires within fail-within", check: CheckCertExpiry, file: "apiserver-etcd-client.crt", defaultThresholds: true, apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "apiserver-etcd-client", "etcd/ca", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(3 * 24 * time.Hour) }, nil)
		}},
		{name: "expires within warn-within", check: CheckCertExpiry, file: "apiserver-etcd-client.crt", sev: report.Warn, defaultThresholds: true, apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "apiserver-etcd-client", "etcd/ca", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(20 * 24 * time.Hour) }, nil)
		}},
		{name: "leaf outlives its CA", check: CheckCertOutlivesCA, file: "front-proxy-client.crt", apply: func(t *testing.T, root string) {
			ca, _ := loadPair(t, pdir(root), "front-proxy-ca")
			reissue(t, pdir(root), "front-proxy-client", "front-proxy-ca", func(c *x509.Certificate) { c.NotAfter = ca.NotAfter.Add(24 * time.Hour) }, nil)
		}},
		{name: "key does not match", check: CheckCertKeyMatch, file: "apiserver-etcd-client.key", apply: func(t *testing.T, root string) {
			replaceFile(t, filepath.Join(pdir(root), "apiserver-etcd-client.key"), keyPEM(t, newKey(t, false)))
		}},
		{name: "missing SAN on apiserver", check: CheckCertSAN, file: "apiserver.crt", apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "apiserver", "ca", func(c *x509.Certificate) {
				c.DNSNames = slices.DeleteFunc(c.DNSNames, func(s string) bool { return s == "kubernetes.default.svc" })
			}, nil)
		}},
		{name: "missing SAN on etcd peer", check: CheckCertSAN, file: "etcd/peer.crt", apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "etcd/peer", "etcd/ca", func(c *x509.Certificate) { c.IPAddresses = c.IPAddresses[:1] }, nil)
		}},
		{name: "shared etcd and cluster CA", check: CheckEtcdCASeparate, file: "etcd/ca.crt", also: []string{"etcd/ca.crt"}, apply: func(t *testing.T, root string) {
			p := pdir(root)
			for _, ext := range []string{".crt", ".key"} {
				b, err := os.ReadFile(filepath.Join(p, "ca"+ext))
				if err != nil {
					t.Fatal(err)
				}
				replaceFile(t, filepath.Join(p, "etcd/ca"+ext), b)
			}
			for _, l := range []string{"etcd/server", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client"} {
				reissue(t, p, l, "etcd/ca", nil, nil)
			}
		}},
		{name: "world-readable key", check: CheckFileMode, file: "apiserver.key", apply: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(pdir(root), "apiserver.key"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "group-writable certificate", check: CheckFileMode, file: "ca.crt", apply: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(pdir(root), "ca.crt"), 0o664); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "world-readable kubeconfig", check: CheckFileMode, file: "admin.conf", apply: func(t *testing.T, root string) {
			if err := os.Chmod(filepath.Join(kdir(root), "admin.conf"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "not root-owned", check: CheckFileOwner, file: "sa.key", apply: func(t *testing.T, root string) {
			if err := os.Chown(filepath.Join(pdir(root), "sa.key"), 1000, 1000); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "not PEM", check: CheckFileParse, file: "front-proxy-client.crt", apply: func(t *testing.T, root string) {
			replaceFile(t, filepath.Join(pdir(root), "front-proxy-client.crt"), []byte("this is not a certificate\n"))
		}},
		{name: "truncated", check: CheckFileParse, file: "etcd/peer.crt", apply: func(t *testing.T, root string) {
			p := filepath.Join(pdir(root), "etcd/peer.crt")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			replaceFile(t, p, b[:len(b)/2])
		}},
		{name: "missing file", check: CheckFilePresent, file: "scheduler.conf", apply: func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(kdir(root), "scheduler.conf")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "kubeconfig client certificate from a foreign CA", check: CheckKubeconfigSigner, file: "controller-manager.conf", apply: func(t *testing.T, root string) {
			foreign, fkey := newCA(t, "kubernetes", false, time.Now().Add(-time.Hour), 24*time.Hour*365)
			k := newKey(t, false)
			c := sign(t, &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: "system:kube-controller-manager"},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(300 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage: usageClient, BasicConstraintsValid: true}, foreign, k.Public(), fkey)
			editKubeconfig(t, filepath.Join(kdir(root), "controller-manager.conf"), func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.ClientCertificateData, u.ClientKeyData = certPEM(c.Raw), keyPEM(t, k)
			})
		}},
		{name: "kubeconfig certificate-authority-data is not ca.crt", check: CheckKubeconfigCAData, file: "scheduler.conf", apply: func(t *testing.T, root string) {
			foreign, _ := newCA(t, "kubernetes", false, time.Now().Add(-time.Hour), 24*time.Hour*365)
			editKubeconfig(t, filepath.Join(kdir(root), "scheduler.conf"), func(cl *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) {
				cl.CertificateAuthorityData = certPEM(foreign.Raw)
			})
		}},
		{name: "kubelet.conf for another node", check: CheckCertSubject, file: "kubelet.conf", apply: func(t *testing.T, root string) {
			p := pdir(root)
			ca, caKey := loadPair(t, p, "ca")
			k := newKey(t, false)
			c := sign(t, &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: "system:node:intruder", Organization: []string{groupNodes}},
				NotBefore: ca.NotBefore, NotAfter: time.Now().Add(300 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage: usageClient, BasicConstraintsValid: true}, ca, k.Public(), caKey)
			editKubeconfig(t, filepath.Join(kdir(root), "kubelet.conf"), func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
				u.ClientCertificateData, u.ClientKeyData = certPEM(c.Raw), keyPEM(t, k)
			})
		}},
		{name: "leaf is a CA", check: CheckCertCA, file: "front-proxy-client.crt", apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "front-proxy-client", "front-proxy-ca", func(c *x509.Certificate) { c.IsCA = true }, nil)
		}},
		{name: "wrong extended key usage", check: CheckCertUsage, file: "etcd/server.crt", apply: func(t *testing.T, root string) {
			reissue(t, pdir(root), "etcd/server", "etcd/ca", func(c *x509.Certificate) { c.ExtKeyUsage = usageServer }, nil)
		}},
		{name: "weak key", check: CheckCertKeyType, file: "apiserver-kubelet-client.crt", apply: func(t *testing.T, root string) {
			k, err := rsa.GenerateKey(rand.Reader, 1024)
			if err != nil {
				t.Fatal(err)
			}
			reissue(t, pdir(root), "apiserver-kubelet-client", "ca", nil, k)
		}},
		{name: "sa.key does not match sa.pub", check: CheckCertKeyMatch, file: "sa.key", apply: func(t *testing.T, root string) {
			replaceFile(t, filepath.Join(pdir(root), "sa.pub"), pubPEM(t, newKey(t, false).Public()))
		}},
		{name: "kubeconfig server over http", check: CheckKubeconfigServer, file: "admin.conf", apply: func(t *testing.T, root string) {
			editKubeconfig(t, filepath.Join(kdir(root), "admin.conf"), func(cl *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) {
				cl.Server = strings.Replace(cl.Server, "https://", "http://", 1)
			})
		}},
		{name: "kubeconfig server of another cluster", check: CheckKubeconfigServer, file: "controller-manager.conf", apply: func(t *testing.T, root string) {
			editKubeconfig(t, filepath.Join(kdir(root), "controller-manager.conf"), func(cl *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) {
				cl.Server = "https://10.99.0.1:6443"
			})
		}},
		{name: "kubeconfig server the API server's certificate does not name", check: CheckKubeconfigServer, file: "scheduler.conf", apply: func(t *testing.T, root string) {
			// Loopback is a fine place for the scheduler, but kubeadm's
			// apiserver.crt has no SAN for 127.0.0.1: TLS would fail.
			editKubeconfig(t, filepath.Join(kdir(root), "scheduler.conf"), func(cl *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) {
				cl.Server = "https://127.0.0.1:6443"
			})
		}},
		{name: "kubelet serving certificate expired", check: CheckCertExpiry, file: kubeletPKI + "/kubelet.crt", sev: report.Warn, apply: func(t *testing.T, root string) {
			genKubeletServing(t, root, "cp1", time.Now().Add(-400*24*time.Hour), 365*24*time.Hour)
		}},
		{name: "kubelet.key readable by others", check: CheckFileMode, file: kubeletPKI + "/kubelet.key", apply: func(t *testing.T, root string) {
			os.Chmod(filepath.Join(root, kubeletPKI, "kubelet.key"), 0o644)
		}},
		{name: "kubelet.key of another certificate", check: CheckCertKeyMatch, file: kubeletPKI + "/kubelet.key", apply: func(t *testing.T, root string) {
			replaceFile(t, filepath.Join(root, kubeletPKI, "kubelet.key"), keyPEM(t, newKey(t, false)))
		}},
		{name: "bootstrapped kubelet serving certificate without the node address", check: CheckCertSAN, file: kubeletPKI + "/kubelet-server-current.pem", apply: func(t *testing.T, root string) {
			genKubeletBootstrapped(t, root, "ca", false)
		}},
		{name: "bootstrapped kubelet serving certificate from another CA", check: CheckKubeletServing, file: kubeletPKI + "/kubelet-server-current.pem", apply: func(t *testing.T, root string) {
			genKubeletBootstrapped(t, root, "front-proxy-ca", true)
		}},
	}
}

// kubeletPKI is where the kubelet keeps its serving certificate.
const kubeletPKI = "/var/lib/kubelet/pki"

// genKubeletBootstrapped writes what a kubelet with serverTLSBootstrap has
// once its CSR is approved: kubelet-server-<time>.pem (certificate and key)
// signed by signerBase of cp1's PKI, and kubelet-server-current.pem linking
// to it; withAddress puts cp1's address in its SANs, as the kubelet asks.
func genKubeletBootstrapped(t *testing.T, root, signerBase string, withAddress bool) {
	t.Helper()
	ca, caKey := loadPair(t, pdir(root), signerBase)
	k := newKey(t, true)
	tmpl := &x509.Certificate{SerialNumber: serial(t), Subject: pkix.Name{CommonName: "system:node:cp1", Organization: []string{"system:nodes"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour), DNSNames: []string{"cp1"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if withAddress {
		tmpl.IPAddresses = []net.IP{net.ParseIP("10.77.0.11")}
	}
	c := sign(t, tmpl, ca, k.Public(), caKey)
	dir := filepath.Join(root, kubeletPKI)
	os.Remove(filepath.Join(dir, "kubelet.crt"))
	os.Remove(filepath.Join(dir, "kubelet.key"))
	writeFile(t, filepath.Join(dir, "kubelet-server-2026-11-29-10-00-00.pem"), append(certPEM(c.Raw), keyPEM(t, k)...), 0o600)
	if err := os.Symlink("kubelet-server-2026-11-29-10-00-00.pem", filepath.Join(dir, "kubelet-server-current.pem")); err != nil {
		t.Fatal(err)
	}
}

// runDefects plants each defect in a copy of the clean tree and expects its
// finding, on its file, and fails on no other file.
func runDefects(t *testing.T, clean string, opts func(root string) Options) {
	for _, d := range defects() {
		t.Run(d.name, func(t *testing.T) {
			o := opts(t.TempDir())
			if d.defaultThresholds && (o.WarnWithin != 0 || o.FailWithin != 0) {
				t.Skip("needs the default --warn-within and --fail-within")
			}
			root := t.TempDir()
			copyTree(t, clean, root)
			o = opts(root)
			if strings.HasPrefix(d.file, kubeletPKI) && o.Local != nil && o.Local.KubeletPKIDir == "" {
				t.Skip("the kubelet's directory is audited on a remote node, or with --kubelet-pki-dir")
			}
			d.apply(t, root)
			res, err := Check(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			want := d.sev
			if want == "" {
				want = report.Fail
			}
			found := false
			for _, f := range res.Findings.Findings {
				if f.Check == d.check && f.File == d.file && f.Severity == want {
					found = true
				}
				if f.Severity == report.Fail && f.File != d.file && !slices.Contains(d.also, f.File) && rowFile(f.File) != rowFile(d.file) {
					t.Errorf("unexpected fail on another file: %s %s: %s", f.Check, f.File, f.Message)
				}
			}
			if !found {
				t.Errorf("no %s %s on %s; got:\n%s", want, d.check, d.file, dump(res))
			}
			if want == report.Fail && res.Findings.ExitCode() != 2 {
				t.Errorf("exit code %d, want 2", res.Findings.ExitCode())
			}
		})
	}
}

// expectClean: no failure, and warnings only for super-admin.conf.
func expectClean(t *testing.T, res *Result) {
	t.Helper()
	for _, f := range res.Findings.Findings {
		if f.Severity == report.Fail || f.Severity == report.Warn && f.File != "super-admin.conf" {
			t.Errorf("%s %s %s: %s", f.Severity, f.Check, f.File, f.Message)
		}
	}
}

func TestCheckGeneratedClean(t *testing.T) {
	for _, ec := range []bool{false, true} {
		t.Run(map[bool]string{false: "RSA", true: "ECDSA-P256"}[ec], func(t *testing.T) {
			root := t.TempDir()
			c := defaultGen("cp1", "10.77.0.11")
			c.ECDSA = ec
			genPKI(t, root, c)
			res, err := Check(context.Background(), localOpts(root))
			if err != nil {
				t.Fatal(err)
			}
			expectClean(t, res)
			if n := len(res.Certificates); n != 15 {
				t.Errorf("%d certificates, want 15 (10 in pki, 5 kubeconfigs)", n)
			}
			for _, c := range res.Certificates {
				want := "RSA-2048"
				if ec {
					want = "ECDSA-P256"
				}
				if c.KeyType != want {
					t.Errorf("%s: key type %s, want %s", c.File, c.KeyType, want)
				}
			}
			// The super-admin warning is there.
			var warned bool
			for _, f := range res.Findings.Findings {
				warned = warned || f.File == "super-admin.conf" && f.Severity == report.Warn && f.Check == CheckCertSubject
			}
			if !warned {
				t.Error("super-admin.conf: no warning")
			}
		})
	}
}

func TestCheckGeneratedDefects(t *testing.T) {
	clean := t.TempDir()
	genPKI(t, clean, defaultGen("cp1", "10.77.0.11"))
	runDefects(t, clean, localOpts)
}

func TestCheckVersionAndModes(t *testing.T) {
	tests := []struct {
		name  string
		gen   func(*genConfig)
		edit  func(t *testing.T, root string)
		check string
		file  string
		sev   report.Severity
	}{
		{name: "system:masters admin on 1.34 is a warning", gen: func(c *genConfig) { c.LegacyAdmin = true },
			check: CheckCertSubject, file: "admin.conf", sev: report.Warn},
		{name: "system:masters admin on 1.28 is right", gen: func(c *genConfig) { c.LegacyAdmin = true; c.Version = "v1.28.9"; c.NoSuperAdmin = true },
			check: CheckCertSubject, file: "admin.conf", sev: report.OK},
		{name: "kubeadm:cluster-admins on 1.28 is wrong", gen: func(c *genConfig) { c.Version = "v1.28.9" },
			check: CheckCertSubject, file: "apiserver-kubelet-client.crt", sev: report.Fail},
		{name: "joined control plane without super-admin.conf", gen: func(c *genConfig) { c.NoSuperAdmin = true },
			check: CheckFilePresent, file: "super-admin.conf", sev: report.OK},
		{name: "external etcd has no etcd files", gen: func(c *genConfig) { c.ExternalEtcd = true },
			check: CheckEtcdMode, file: "", sev: report.OK},
		{name: "external CA: ca.key absent", edit: func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(pdir(root), "ca.key")); err != nil {
				t.Fatal(err)
			}
		}, check: CheckFilePresent, file: "ca.key", sev: report.OK},
		{name: "missing leaf key", edit: func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(pdir(root), "apiserver.key")); err != nil {
				t.Fatal(err)
			}
		}, check: CheckFilePresent, file: "apiserver.key", sev: report.Fail},
		{name: "partial etcd", edit: func(t *testing.T, root string) {
			if err := os.Remove(filepath.Join(pdir(root), "etcd/server.crt")); err != nil {
				t.Fatal(err)
			}
		}, check: CheckFilePresent, file: "etcd/server.crt", sev: report.Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			c := defaultGen("cp1", "10.77.0.11")
			if tt.gen != nil {
				tt.gen(&c)
			}
			genPKI(t, root, c)
			if tt.edit != nil {
				tt.edit(t, root)
			}
			o := localOpts(root)
			o.Local.NodeName = "cp1" // no etcd.yaml with external etcd
			res, err := Check(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, f := range res.Findings.Findings {
				if f.Check == tt.check && f.File == tt.file {
					found = true
					if f.Severity != tt.sev {
						t.Errorf("%s %s: %s, want %s: %s", f.Check, f.File, f.Severity, tt.sev, f.Message)
					}
				}
			}
			if !found {
				t.Errorf("no %s finding on %q:\n%s", tt.check, tt.file, dump(res))
			}
			if tt.sev != report.Fail {
				for _, f := range res.Findings.Findings {
					if f.Severity == report.Fail {
						t.Errorf("unexpected fail: %s %s: %s", f.Check, f.File, f.Message)
					}
				}
			}
		})
	}
}

func TestCheckExternalCA(t *testing.T) {
	root := t.TempDir()
	genPKI(t, root, defaultGen("cp1", "10.77.0.11"))
	for _, k := range []string{"ca.key", "front-proxy-ca.key", "etcd/ca.key"} {
		if err := os.Remove(filepath.Join(pdir(root), k)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Check(context.Background(), localOpts(root))
	if err != nil {
		t.Fatal(err)
	}
	expectClean(t, res)
	for _, c := range res.Certificates {
		if !c.ExternallyManaged {
			t.Errorf("%s: not externally managed", c.File)
		}
	}
}

// inv builds an inventory of control planes cp1..cpN.
func inv(n int) *inventory.Inventory {
	i := &inventory.Inventory{Name: "lab", KubernetesVersion: "v1.34.4", ControlPlaneEndpoint: "10.77.0.100:6443"}
	for k := 1; k <= n; k++ {
		name := "cp" + string(rune('0'+k))
		i.Nodes = append(i.Nodes, inventory.Node{Name: name, Address: "10.77.0.1" + string(rune('0'+k)), Role: inventory.RoleControlPlane})
	}
	return i
}

// genCluster writes n control planes sharing the CAs of the first.
func genCluster(t *testing.T, n int) (*inventory.Inventory, fakeConnector) {
	i := inv(n)
	conn := fakeConnector{}
	for k, nd := range i.Nodes {
		root := t.TempDir()
		c := defaultGen(nd.Name, nd.Address)
		if k > 0 {
			c.CAsFrom = conn["cp1"]
			c.NoSuperAdmin = true
		}
		genPKI(t, root, c)
		conn[nd.Name] = root
	}
	return i, conn
}

func TestCheckRemoteCluster(t *testing.T) {
	i, conn := genCluster(t, 3)
	opts := Options{Inventory: i, Nodes: i.Nodes, Connector: conn, Concurrency: 2}
	t.Run("clean", func(t *testing.T) {
		res, err := Check(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		expectClean(t, res)
		if got := len(res.Nodes); got != 3 {
			t.Errorf("%d nodes", got)
		}
		n := 0
		for _, f := range res.Findings.Findings {
			if f.Check == CheckClusterSameCA || f.Check == CheckClusterSameSA {
				n++
			}
		}
		if n != 12 {
			t.Errorf("%d cluster findings, want 12 (3 nodes x 3 CAs + sa)", n)
		}
	})
	t.Run("cp2 with different CAs", func(t *testing.T) {
		other := t.TempDir()
		genPKI(t, other, defaultGen("cp2", "10.77.0.12"))
		c2 := fakeConnector{"cp1": conn["cp1"], "cp2": other, "cp3": conn["cp3"]}
		o := opts
		o.Connector = c2
		res, err := Check(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range []string{"ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"} {
			want := report.Finding{Node: "cp2", Check: CheckClusterSameCA, File: file, Severity: report.Fail}
			if !hasFinding(res, want) {
				t.Errorf("no %+v:\n%s", want, dump(res))
			}
		}
		if !hasFinding(res, report.Finding{Node: "cp2", Check: CheckClusterSameSA, File: "sa.pub", Severity: report.Fail}) {
			t.Errorf("no cluster.same-sa fail on cp2:\n%s", dump(res))
		}
		for _, f := range res.Findings.Findings {
			if f.Severity == report.Fail && f.Node != "cp2" {
				t.Errorf("fail on %s: %s %s: %s", f.Node, f.Check, f.File, f.Message)
			}
		}
	})
	t.Run("unreachable node", func(t *testing.T) {
		o := opts
		o.Connector = fakeConnector{"cp1": conn["cp1"], "cp2": conn["cp2"]}
		res, err := Check(context.Background(), o)
		if err == nil || !strings.Contains(err.Error(), "node cp3: ") {
			t.Fatalf("error %v, want one naming node cp3", err)
		}
		if !hasFinding(res, report.Finding{Node: "cp3", Check: CheckNodeRead, Severity: report.Fail}) {
			t.Errorf("no node.read fail for cp3:\n%s", dump(res))
		}
		for _, f := range res.Findings.Findings {
			if f.Severity == report.Fail && f.Node != "cp3" {
				t.Errorf("fail on %s: %s %s: %s", f.Node, f.Check, f.File, f.Message)
			}
		}
		if len(res.Certificates) != 2*15-1 {
			t.Errorf("%d certificates, want those of cp1 and cp2", len(res.Certificates))
		}
	})
	t.Run("remote defects", func(t *testing.T) {
		// The defect matrix through the remote path, on cp1.
		runDefects(t, conn["cp1"], func(root string) Options {
			return Options{Inventory: i, Nodes: i.Nodes[:1], Connector: fakeConnector{"cp1": root}}
		})
	})
	t.Run("remote SAN expectations come from the inventory", func(t *testing.T) {
		i2 := *i
		i2.ControlPlaneEndpoint = "api.example.test:6443"
		res, err := Check(context.Background(), Options{Inventory: &i2, Nodes: i2.Nodes[:1], Connector: conn})
		if err != nil {
			t.Fatal(err)
		}
		f := findOne(res, "cp1", CheckCertSAN, "apiserver.crt")
		if f.Severity != report.Fail || !strings.Contains(f.Message, "api.example.test") {
			t.Errorf("got %+v", f)
		}
	})
}

func hasFinding(r *Result, want report.Finding) bool {
	for _, f := range r.Findings.Findings {
		if f.Node == want.Node && f.Check == want.Check && f.File == want.File && f.Severity == want.Severity {
			return true
		}
	}
	return false
}

func findOne(r *Result, nodeName, check, file string) report.Finding {
	for _, f := range r.Findings.Findings {
		if f.Node == nodeName && f.Check == check && f.File == file {
			return f
		}
	}
	return report.Finding{}
}

func TestCheckLocalWithoutManifests(t *testing.T) {
	root := t.TempDir()
	genPKI(t, root, defaultGen("cp1", "10.77.0.11"))
	res, err := Check(context.Background(), Options{Local: &LocalSource{PKIDir: pdir(root), NodeName: "cp1"}})
	if err != nil {
		t.Fatal(err)
	}
	expectClean(t, res)
	f := findOne(res, "cp1", CheckCertSAN, "apiserver.crt")
	for _, s := range []string{"not checked", "node address", "service range", "cluster domain"} {
		if !strings.Contains(f.Message, s) {
			t.Errorf("apiserver SAN message %q does not say %q", f.Message, s)
		}
	}
	if f := findOne(res, "cp1", CheckEtcdMode, ""); !strings.Contains(f.Message, "stacked etcd assumed") {
		t.Errorf("etcd mode: %q", f.Message)
	}
}

func TestExpiryThresholds(t *testing.T) {
	root := t.TempDir()
	c := defaultGen("cp1", "10.77.0.11")
	c.Validity = 10 * 24 * time.Hour
	genPKI(t, root, c)
	for _, tt := range []struct {
		warn, fail time.Duration
		sev        report.Severity
	}{
		{30 * 24 * time.Hour, 7 * 24 * time.Hour, report.Warn},
		{30 * 24 * time.Hour, 11 * 24 * time.Hour, report.Fail},
		{5 * 24 * time.Hour, 2 * 24 * time.Hour, report.OK},
	} {
		o := localOpts(root)
		o.WarnWithin, o.FailWithin = tt.warn, tt.fail
		res, err := Check(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if f := findOne(res, "cp1", CheckCertExpiry, "apiserver.crt"); f.Severity != tt.sev {
			t.Errorf("warn %s fail %s: %s (%s), want %s", tt.warn, tt.fail, f.Severity, f.Message, tt.sev)
		}
		if f := findOne(res, "cp1", CheckCertExpiry, "ca.crt"); f.Severity != report.OK {
			t.Errorf("ca.crt: %s", f.Message)
		}
	}
	o := localOpts(root)
	o.WarnWithin, o.FailWithin = time.Hour, 2*time.Hour
	if _, err := Check(context.Background(), o); err == nil {
		t.Error("fail-within longer than warn-within accepted")
	}
}

func TestOutputs(t *testing.T) {
	root := t.TempDir()
	genPKI(t, root, defaultGen("cp1", "10.77.0.11"))
	reissue(t, pdir(root), "front-proxy-client", "front-proxy-ca", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(-time.Hour) }, nil)
	res, err := Check(context.Background(), localOpts(root))
	if err != nil {
		t.Fatal(err)
	}
	var tbl bytes.Buffer
	if err := res.WriteTable(&tbl, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(tbl.String(), "\n")
	if !strings.HasPrefix(lines[0], "NODE") || !strings.Contains(lines[1], "front-proxy-client.crt") || !strings.Contains(lines[1], "<invalid>") || !strings.Contains(lines[1], "FAIL") {
		t.Errorf("table does not start with the failing certificate:\n%s", tbl.String())
	}
	if !strings.Contains(tbl.String(), " UTC ") {
		t.Errorf("no kubeadm-style date:\n%s", tbl.String())
	}

	var js bytes.Buffer
	if err := res.Findings.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Findings []map[string]string `json:"findings"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Findings) == 0 || doc.Findings[0]["severity"] != "fail" || doc.Findings[0]["node"] != "cp1" {
		t.Errorf("json: %v", doc.Findings[:1])
	}

	var prom bytes.Buffer
	if err := res.WriteProm(&prom); err != nil {
		t.Fatal(err)
	}
	p := prom.String()
	for _, want := range []string{
		"# TYPE kbootstrap_pki_certificate_expiry_timestamp_seconds gauge",
		`kbootstrap_pki_certificate_expiry_timestamp_seconds{node="cp1",file="etcd/ca.crt",name="etcd-ca",ca="",externally_managed="false"} `,
		`kbootstrap_pki_findings{node="cp1",severity="fail"} 1`,
		"kbootstrap_pki_audit_timestamp_seconds ",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("prom output lacks %q:\n%s", want, p)
		}
	}
	if escapeLabel("a\"b\\c\nd") != `a\"b\\c\nd` {
		t.Error("label escaping")
	}
}

func TestLoaders(t *testing.T) {
	for _, tt := range []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"not PEM", "hello"},
		{"PEM of garbage", "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"},
		{"truncated", "-----BEGIN CERTIFICATE-----\nMIIB"},
	} {
		if _, err := LoadCertificate([]byte(tt.data)); err == nil {
			t.Errorf("LoadCertificate(%s): no error", tt.name)
		}
		if _, err := LoadPrivateKey([]byte(tt.data)); err == nil {
			t.Errorf("LoadPrivateKey(%s): no error", tt.name)
		}
		if _, err := LoadKubeconfig([]byte(tt.data)); err == nil {
			t.Errorf("LoadKubeconfig(%s): no error", tt.name)
		}
	}
	if _, err := LoadKubeconfig([]byte("apiVersion: v1\nkind: Config\ncurrent-context: x\n")); err == nil || !errors.Is(err, err) {
		t.Error("kubeconfig with an undefined context accepted")
	}
}

func TestFirstServiceIP(t *testing.T) {
	for in, want := range map[string]string{"10.96.0.0/12": "10.96.0.1", "10.96.0.0/12,fd00::/108": "10.96.0.1", "fd00::/108": "fd00::1", "172.30.255.0/24": "172.30.255.1"} {
		ip, err := firstServiceIP(in)
		if err != nil || ip.String() != want {
			t.Errorf("%s: %v %v, want %s", in, ip, err, want)
		}
	}
	if _, err := firstServiceIP("nope"); err == nil {
		t.Error("bad CIDR accepted")
	}
}

// After the kubelet's first rotation kubelet.conf points at
// /var/lib/kubelet/pki/kubelet-client-current.pem (certificate and key in one
// file) instead of embedding them.
func TestKubeletConfReferencesRotatedCertificate(t *testing.T) {
	i, conn := genCluster(t, 1)
	root := conn["cp1"]
	kc := filepath.Join(kdir(root), "kubelet.conf")
	var pemFile []byte
	editKubeconfig(t, kc, func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
		pemFile = append(append([]byte{}, u.ClientCertificateData...), u.ClientKeyData...)
		u.ClientCertificateData, u.ClientKeyData = nil, nil
		u.ClientCertificate = "/var/lib/kubelet/pki/kubelet-client-current.pem"
		u.ClientKey = "/var/lib/kubelet/pki/kubelet-client-current.pem"
	})
	opts := Options{Inventory: i, Nodes: i.Nodes, Connector: conn}

	res, err := Check(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if f := findOne(res, "cp1", CheckFilePresent, "kubelet.conf"); f.Severity != report.Fail || !strings.Contains(f.Message, "kubelet-client-current.pem") {
		t.Errorf("missing rotated certificate: %+v", f)
	}

	writeFile(t, filepath.Join(root, "var/lib/kubelet/pki/kubelet-client-current.pem"), pemFile, 0o600)
	res, err = Check(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	expectClean(t, res)
	if f := findOne(res, "cp1", CheckKubeconfigSigner, "kubelet.conf"); f.Severity != report.OK || !strings.Contains(f.Message, "client-certificate /var/lib/kubelet/pki/kubelet-client-current.pem") {
		t.Errorf("kubelet.conf signer: %+v", f)
	}
}

// TestKubeletServingBootstrapped: a serving certificate the cluster CA
// signed for the node's address (serverTLSBootstrap) is clean, its mode
// judged on the file kubelet-server-current.pem links to.
func TestKubeletServingBootstrapped(t *testing.T) {
	i, conn := genCluster(t, 1)
	genKubeletBootstrapped(t, conn["cp1"], "ca", true)
	res, err := Check(context.Background(), Options{Inventory: i, Nodes: i.Nodes, Connector: conn})
	if err != nil {
		t.Fatal(err)
	}
	expectClean(t, res)
	if f := findOne(res, "cp1", CheckKubeletServing, kubeletPKI+"/kubelet-server-current.pem"); f.Severity != report.OK || !strings.Contains(f.Message, "signed by ca.crt") {
		t.Errorf("signer: %+v", f)
	}
	if f := findOne(res, "cp1", CheckFileMode, kubeletPKI+"/kubelet-server-2026-11-29-10-00-00.pem"); f.Severity != report.OK {
		t.Errorf("mode of the linked file: %+v", f)
	}
	if f := findOne(res, "cp1", CheckKubeconfigServer, "admin.conf"); f.Severity != report.OK {
		t.Errorf("admin.conf server: %+v", f)
	}
}
