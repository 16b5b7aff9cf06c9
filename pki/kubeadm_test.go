package pki

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/report"
)

// Tests against PKIs written by the real kubeadm. They run kubeadm with
// --rootfs, which chroots it into a temporary directory: everything it
// writes lands under that directory's etc/kubernetes, never in the host's
// /etc/kubernetes.

// kubeadmBinary finds the kubeadm built by `make lab-artifacts`, or skips.
func kubeadmBinary(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kubeadm --rootfs needs root (chroot)")
	}
	cache := os.Getenv("KBOOTSTRAP_LAB_CACHE")
	if cache == "" {
		cache = "/var/cache/kbootstrap-lab"
	}
	candidates := []string{
		os.Getenv("KBOOTSTRAP_KUBEADM"),
		filepath.Join(cache, "artifacts/k8s-v1.34.4-etcd-v3.6.5/bin/kubeadm"),
		"../.lab/artifacts/bin/kubeadm",
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			abs, err := filepath.Abs(c)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
	}
	t.Skip("kubeadm binary not built: run make lab-artifacts")
	return ""
}

type kubeadmCluster struct {
	NodeName, Address string
	Validity          string // certificateValidityPeriod; "" = kubeadm's default (1 year)
	Algorithm         string // encryptionAlgorithm; "" = RSA-2048
}

func (c kubeadmCluster) config() string {
	s := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: %s
  bindPort: 6443
nodeRegistration:
  name: %s
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: Never
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: lab
kubernetesVersion: v1.34.4
controlPlaneEndpoint: 10.77.0.100:6443
certificatesDir: /etc/kubernetes/pki
networking:
  serviceSubnet: 10.96.0.0/12
  dnsDomain: cluster.local
`, c.Address, c.NodeName)
	if c.Validity != "" {
		s += "certificateValidityPeriod: " + c.Validity + "\n"
	}
	if c.Algorithm != "" {
		s += "encryptionAlgorithm: " + c.Algorithm + "\n"
	}
	return s
}

// runKubeadm runs the kubeadm binary chrooted into root.
func runKubeadm(t *testing.T, bin, root string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--rootfs", root}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubeadm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// kubeadmInit writes a control plane's PKI, kubeconfigs and static pod
// manifests with kubeadm's own init phases. casFrom, when set, is the root of
// a control plane whose CAs and sa key pair are copied first, as
// kubeadm join --control-plane does.
func kubeadmInit(t *testing.T, bin string, c kubeadmCluster, casFrom, root string) string {
	t.Helper()
	writeFile(t, filepath.Join(root, "cfg.yaml"), []byte(c.config()), 0o600)
	if casFrom != "" {
		for _, f := range []string{"ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key", "sa.key", "sa.pub"} {
			b, err := os.ReadFile(filepath.Join(pdir(casFrom), f))
			if err != nil {
				t.Fatal(err)
			}
			mode := os.FileMode(0o600)
			if strings.HasSuffix(f, ".crt") {
				mode = 0o644
			}
			writeFile(t, filepath.Join(pdir(root), f), b, mode)
		}
	}
	for _, phase := range [][]string{{"certs", "all"}, {"kubeconfig", "all"}, {"control-plane", "all"}, {"etcd", "local"}} {
		runKubeadm(t, bin, root, append(append([]string{"init", "phase"}, phase...), "--config", "/cfg.yaml")...)
	}
	return root
}

// expiration is one row of kubeadm certs check-expiration.
type expiration struct {
	Name, Expires, CA string
	External          bool
}

var columns = regexp.MustCompile(`\s{2,}`)

// checkExpiration runs kubeadm certs check-expiration on root and parses
// both of its tables.
func checkExpiration(t *testing.T, bin, root string) map[string]expiration {
	t.Helper()
	out := runKubeadm(t, bin, root, "certs", "check-expiration", "--config", "/cfg.yaml")
	rows := map[string]expiration{}
	section := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "CERTIFICATE AUTHORITY"):
			section = "ca"
			continue
		case strings.HasPrefix(line, "CERTIFICATE "):
			section = "cert"
			continue
		case section == "" || strings.HasPrefix(line, "!MISSING!"):
			continue
		}
		f := columns.Split(line, -1)
		e := expiration{Name: f[0]}
		switch {
		case section == "cert" && len(f) == 5:
			e.Expires, e.CA, e.External = f[1], f[3], f[4] == "yes"
		case section == "ca" && len(f) == 4:
			e.Expires, e.External = f[1], f[3] == "yes"
		default:
			t.Fatalf("cannot parse check-expiration line %q in:\n%s", line, out)
		}
		rows[e.Name] = e
	}
	if len(rows) == 0 {
		t.Fatalf("no rows in check-expiration output:\n%s", out)
	}
	return rows
}

// compareExpiration: every certificate kubeadm lists is in the result with
// the same expiry date, CA and externally-managed flag.
func compareExpiration(t *testing.T, res *Result, rows map[string]expiration) {
	t.Helper()
	byName := map[string]CertStatus{}
	for _, c := range res.Certificates {
		byName[c.Name] = c
	}
	for name, e := range rows {
		c, ok := byName[name]
		if !ok {
			t.Errorf("kubeadm lists %s, the audit does not", name)
			continue
		}
		if got := c.NotAfter.UTC().Format(DateFormat); got != e.Expires {
			t.Errorf("%s: audit says it expires %s, kubeadm %s", name, got, e.Expires)
		}
		if c.ExternallyManaged != e.External {
			t.Errorf("%s: externally managed %v, kubeadm %v", name, c.ExternallyManaged, e.External)
		}
		if e.CA != "" && c.CA != e.CA {
			t.Errorf("%s: CA %s, kubeadm %s", name, c.CA, e.CA)
		}
	}
	if len(rows) != 14 {
		t.Errorf("kubeadm listed %d certificates and CAs, want 14 (all but kubelet.conf)", len(rows))
	}
}

func TestKubeadmPKI(t *testing.T) {
	bin := kubeadmBinary(t)
	variants := []struct {
		name       string
		c          kubeadmCluster
		warn, fail time.Duration
		keyType    string
	}{
		{"RSA-2048, one year", kubeadmCluster{NodeName: "cp1", Address: "10.77.0.11"}, 0, 0, "RSA-2048"},
		{"ECDSA-P256, 48h certificates", kubeadmCluster{NodeName: "cp1", Address: "10.77.0.11", Validity: "48h", Algorithm: "ECDSA-P256"}, 24 * time.Hour, 6 * time.Hour, "ECDSA-P256"},
	}
	roots := map[string]string{}
	for _, v := range variants {
		root := t.TempDir() // outlives the subtest: the defects start from it
		roots[v.name] = root
		t.Run(v.name, func(t *testing.T) {
			kubeadmInit(t, bin, v.c, "", root)
			o := localOpts(root)
			o.WarnWithin, o.FailWithin = v.warn, v.fail
			res, err := Check(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			expectClean(t, res)
			if t.Failed() {
				t.Logf("findings:\n%s", dump(res))
			}
			if len(res.Certificates) != 15 {
				t.Errorf("%d certificates, want 15", len(res.Certificates))
			}
			for _, c := range res.Certificates {
				if c.KeyType != v.keyType {
					t.Errorf("%s: %s key, want %s", c.File, c.KeyType, v.keyType)
				}
			}
			compareExpiration(t, res, checkExpiration(t, bin, root))
			if v.c.Validity == "48h" {
				// The short validity shows: warn at the defaults... and fail.
				o.WarnWithin, o.FailWithin = 0, 0
				res, err := Check(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				if f := findOne(res, "cp1", CheckCertExpiry, "apiserver.crt"); f.Severity != report.Fail {
					t.Errorf("48h certificate with --fail-within 7d: %s %s", f.Severity, f.Message)
				}
			}
		})
	}

	t.Run("external CA", func(t *testing.T) {
		root := t.TempDir()
		copyTree(t, roots[variants[0].name], root)
		if err := os.Remove(filepath.Join(pdir(root), "ca.key")); err != nil {
			t.Fatal(err)
		}
		res, err := Check(context.Background(), localOpts(root))
		if err != nil {
			t.Fatal(err)
		}
		expectClean(t, res)
		compareExpiration(t, res, checkExpiration(t, bin, root))
	})

	t.Run("defects", func(t *testing.T) {
		runDefects(t, roots[variants[0].name], localOpts)
	})
	t.Run("defects ECDSA", func(t *testing.T) {
		runDefects(t, roots[variants[1].name], func(root string) Options {
			o := localOpts(root)
			o.WarnWithin, o.FailWithin = 24*time.Hour, 6*time.Hour
			return o
		})
	})
}

func TestKubeadmControlPlanes(t *testing.T) {
	bin := kubeadmBinary(t)
	i := &inventory.Inventory{Name: "lab", KubernetesVersion: "v1.34.4", ControlPlaneEndpoint: "10.77.0.100:6443"}
	conn := fakeConnector{}
	for k, name := range []string{"cp1", "cp2", "cp3"} {
		n := inventory.Node{Name: name, Address: fmt.Sprintf("10.77.0.1%d", k+1), Role: inventory.RoleControlPlane}
		i.Nodes = append(i.Nodes, n)
		conn[name] = kubeadmInit(t, bin, kubeadmCluster{NodeName: name, Address: n.Address}, conn["cp1"], t.TempDir())
	}
	opts := Options{Inventory: i, Nodes: i.Nodes, Connector: conn}
	res, err := Check(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	expectClean(t, res)

	// cp2 from a kubeadm init of its own: different CAs and sa key.
	conn["cp2"] = kubeadmInit(t, bin, kubeadmCluster{NodeName: "cp2", Address: "10.77.0.12"}, "", t.TempDir())
	res, err = Check(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"} {
		if !hasFinding(res, report.Finding{Node: "cp2", Check: CheckClusterSameCA, File: f, Severity: report.Fail}) {
			t.Errorf("no cluster.same-ca fail for cp2 %s:\n%s", f, dump(res))
		}
	}
	if !hasFinding(res, report.Finding{Node: "cp2", Check: CheckClusterSameSA, File: "sa.pub", Severity: report.Fail}) {
		t.Errorf("no cluster.same-sa fail for cp2:\n%s", dump(res))
	}
	for _, f := range res.Findings.Findings {
		if f.Severity == report.Fail && f.Node != "cp2" {
			t.Errorf("fail on %s: %s %s %s", f.Node, f.Check, f.File, f.Message)
		}
	}
}
