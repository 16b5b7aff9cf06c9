package pki

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/kbootstrap/kbootstrap/report"
)

// The check identifiers (documented in doc.go).
const (
	CheckNodeRead         = "node.read"
	CheckFilePresent      = "file.present"
	CheckFileRead         = "file.read"
	CheckFileParse        = "file.parse"
	CheckFileMode         = "file.mode"
	CheckFileOwner        = "file.owner"
	CheckCertCA           = "cert.ca"
	CheckCertSigner       = "cert.signer"
	CheckCertSubject      = "cert.subject"
	CheckCertUsage        = "cert.usage"
	CheckCertSAN          = "cert.san"
	CheckCertKeyMatch     = "cert.key-match"
	CheckCertKeyType      = "cert.key-type"
	CheckCertExpiry       = "cert.expiry"
	CheckCertOutlivesCA   = "cert.outlives-ca"
	CheckEtcdCASeparate   = "etcd.ca-separate"
	CheckEtcdMode         = "etcd.mode"
	CheckKubeconfigCAData = "kubeconfig.ca-data"
	CheckKubeconfigSigner = "kubeconfig.signer"
	CheckKubeconfigServer = "kubeconfig.server"
	CheckKubeletServing   = "kubelet.serving"
	CheckClusterSameCA    = "cluster.same-ca"
	CheckClusterSameSA    = "cluster.same-sa"
)

// DateFormat is how expiry dates are printed, as kubeadm certs
// check-expiration prints them.
const DateFormat = "Jan 02, 2006 15:04 MST"

// parsedCA is a CA as loaded from a node.
type parsedCA struct {
	Cert     *x509.Certificate
	Bundle   []*x509.Certificate
	Key      crypto.Signer
	External bool // key absent: externally managed
}

// nodeAudit judges one node's snapshot.
type nodeAudit struct {
	snap  *snapshot
	facts facts
	now   time.Time
	warn  time.Duration
	fail  time.Duration

	findings []report.Finding
	certs    []CertStatus

	cas map[string]*parsedCA // by Base
	// issuedBy lists the certificates that should be signed by the
	// cluster CA, by file, for the etcd CA separation check.
	clusterSigned map[string]*x509.Certificate
	// fingerprints compared across nodes: CA Base → sha256 of the
	// certificate; "sa" → sha256 of the public key.
	fingerprints map[string]string
}

func audit(s *snapshot, f facts, o Options, now time.Time) *nodeAudit {
	a := &nodeAudit{snap: s, facts: f, now: now, warn: o.WarnWithin, fail: o.FailWithin,
		cas: map[string]*parsedCA{}, clusterSigned: map[string]*x509.Certificate{}, fingerprints: map[string]string{}}
	a.etcdMode()
	for _, spec := range certSpecs() {
		a.certFile(spec)
	}
	a.serviceAccount()
	for _, k := range kubeconfigSpecs() {
		a.kubeconfig(k)
	}
	a.kubeletServing()
	a.etcdSeparate()
	return a
}

func (a *nodeAudit) add(check, file string, sev report.Severity, format string, args ...any) {
	a.findings = append(a.findings, report.Finding{Node: a.facts.NodeName, Check: check, File: file, Severity: sev, Message: fmt.Sprintf(format, args...)})
}

func (a *nodeAudit) etcdMode() {
	switch a.facts.Etcd {
	case etcdStacked:
		a.add(CheckEtcdMode, "", report.OK, "stacked etcd (etcd.yaml in %s)", a.snap.Dirs.Manifests)
	case etcdExternal:
		a.add(CheckEtcdMode, "", report.OK, "external etcd (kube-apiserver.yaml but no etcd.yaml in %s): kubeadm writes no etcd certificates", a.snap.Dirs.Manifests)
	default:
		if a.snap.file("etcd/ca.key").Present || a.snap.file("etcd/server.crt").Present {
			a.facts.Etcd = etcdStacked
			a.add(CheckEtcdMode, "", report.OK, "no manifests read: stacked etcd assumed, as %s/etcd holds a CA key or a server certificate", a.snap.Dirs.PKI)
		} else {
			a.facts.Etcd = etcdExternal
			a.add(CheckEtcdMode, "", report.OK, "no manifests read: external etcd assumed, as %s/etcd holds no CA key and no server certificate", a.snap.Dirs.PKI)
		}
	}
}

// present reports file.present and file.read; it returns the file when its
// content is available.
func (a *nodeAudit) present(f *fileData, what string) bool {
	if !f.Present {
		a.add(CheckFilePresent, f.Rel, report.Fail, "%s: missing (%s)", f.Path, what)
		return false
	}
	if f.Err != nil {
		a.add(CheckFileRead, f.Rel, report.Fail, "%s: cannot read: %v", f.Path, f.Err)
		return false
	}
	a.add(CheckFilePresent, f.Rel, report.OK, "%s: present", f.Path)
	return true
}

// perms checks mode and owner: secret files (keys, kubeconfigs) 0600,
// others no wider than 0644; root:root (CIS 1.1.13-1.1.21).
func (a *nodeAudit) perms(f *fileData, secret bool) {
	if !f.HasInfo {
		return
	}
	mode := f.Info.Mode.Perm()
	max := fs.FileMode(0o644)
	kind := "a certificate or public key"
	if secret {
		max = 0o600
		kind = "it holds a private key"
	}
	if mode&^max != 0 {
		a.add(CheckFileMode, f.Rel, report.Fail, "%s: mode %04o is wider than %04o (%s)", f.Path, mode, max, kind)
	} else {
		a.add(CheckFileMode, f.Rel, report.OK, "%s: mode %04o", f.Path, mode)
	}
	if f.Info.UID != 0 || f.Info.GID != 0 {
		a.add(CheckFileOwner, f.Rel, report.Fail, "%s: owned by %d:%d, not root:root", f.Path, f.Info.UID, f.Info.GID)
	} else {
		a.add(CheckFileOwner, f.Rel, report.OK, "%s: owned by root:root", f.Path)
	}
}

func (a *nodeAudit) certFile(spec certSpec) {
	crt, key := a.snap.file(spec.Base+".crt"), a.snap.file(spec.Base+".key")
	if spec.Etcd && a.facts.Etcd == etcdExternal && !crt.Present && !key.Present {
		return
	}
	isCA := spec.CA == ""
	if !a.present(crt, "kubeadm's "+spec.Name+" certificate") {
		if isCA && key.Present {
			a.perms(key, true)
		}
		return
	}
	a.perms(crt, false)
	certs, err := LoadCertificate(crt.Data)
	if err != nil {
		a.add(CheckFileParse, crt.Rel, report.Fail, "%s: not a PEM certificate: %v", crt.Path, err)
		return
	}
	a.add(CheckFileParse, crt.Rel, report.OK, "%s: %d certificate(s)", crt.Path, len(certs))
	c := certs[0]

	var signer crypto.Signer
	external := false
	switch {
	case isCA && !key.Present:
		external = true
		a.add(CheckFilePresent, key.Rel, report.OK, "%s: absent: the %s CA is externally managed, as kubeadm treats a CA without its key", key.Path, spec.Name)
	case a.present(key, "the key of "+crt.Rel):
		a.perms(key, true)
		signer, err = LoadPrivateKey(key.Data)
		if err != nil {
			a.add(CheckFileParse, key.Rel, report.Fail, "%s: not a PEM private key: %v", key.Path, err)
		} else {
			a.add(CheckFileParse, key.Rel, report.OK, "%s: %s private key", key.Path, KeyType(signer.Public()))
			a.keyMatch(key.Rel, key.Path+" and "+crt.Rel, c, signer)
		}
	}
	a.keyType(crt.Rel, crt.Path, c)

	st := CertStatus{Node: a.facts.NodeName, File: crt.Rel, Name: spec.Name, CN: c.Subject.CommonName, O: c.Subject.Organization,
		IsCA: isCA, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Residual: c.NotAfter.Sub(a.now), KeyType: KeyType(c.PublicKey)}

	if isCA {
		a.caProperties(crt, c)
		if !external {
			a.subject(crt.Rel, crt.Path, c, spec.CN, false, nil, nil)
		} else {
			a.add(CheckCertSubject, crt.Rel, report.OK, "%s: CN=%q (externally managed CA: subject not judged)", crt.Path, c.Subject.CommonName)
		}
		a.cas[spec.Base] = &parsedCA{Cert: c, Bundle: certs, Key: signer, External: external}
		a.fingerprints[spec.Base] = fingerprint(c.Raw)
		st.ExternallyManaged = external
	} else {
		ca := a.cas[spec.CA]
		st.CA = caName(spec.CA)
		if ca != nil {
			st.ExternallyManaged = ca.External
		}
		a.leafProperties(crt, c)
		a.signer(CheckCertSigner, crt.Rel, crt.Path, c, spec.CA)
		cn := spec.CN
		if spec.CNIsNode {
			cn = a.facts.NodeName
		}
		want, legacy := spec.Orgs(a.facts.Version)
		a.subject(crt.Rel, crt.Path, c, cn, true, want, legacy)
		a.usage(crt.Rel, crt.Path, c, spec.Usages)
		switch spec.SANs {
		case sanAPIServer:
			a.sans(crt.Rel, crt.Path, c, a.apiserverSANs())
		case sanEtcd:
			a.sans(crt.Rel, crt.Path, c, a.etcdSANs())
		}
		a.outlivesCA(crt.Rel, crt.Path, c, spec.CA)
		if spec.CA == caCluster {
			a.clusterSigned[crt.Rel] = c
		}
	}
	a.expiry(crt.Rel, crt.Path, c)
	a.certs = append(a.certs, st)
}

func (a *nodeAudit) keyMatch(rel, what string, c *x509.Certificate, k crypto.Signer) {
	if samePublicKey(c.PublicKey, publicKeyOf(k)) {
		a.add(CheckCertKeyMatch, rel, report.OK, "%s: the private key matches the certificate", what)
	} else {
		a.add(CheckCertKeyMatch, rel, report.Fail, "%s: the private key does not match the certificate's public key", what)
	}
}

func (a *nodeAudit) keyType(rel, path string, c *x509.Certificate) {
	t := KeyType(c.PublicKey)
	if why := keyStrength(c.PublicKey); why != "" {
		a.add(CheckCertKeyType, rel, report.Fail, "%s: %s key: %s", path, t, why)
		return
	}
	a.add(CheckCertKeyType, rel, report.OK, "%s: %s key", path, t)
}

func (a *nodeAudit) caProperties(f *fileData, c *x509.Certificate) {
	var bad []string
	if !c.BasicConstraintsValid || !c.IsCA {
		bad = append(bad, "not a CA (basic constraints CA:FALSE or absent)")
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		bad = append(bad, "key usage lacks certificate signing")
	}
	if !bytes.Equal(c.RawIssuer, c.RawSubject) {
		bad = append(bad, fmt.Sprintf("not self-signed: issued by %q", c.Issuer.String()))
	} else if err := c.CheckSignatureFrom(c); err != nil {
		bad = append(bad, fmt.Sprintf("self-signature does not verify: %v", err))
	}
	if len(bad) > 0 {
		a.add(CheckCertCA, f.Rel, report.Fail, "%s: %s", f.Path, strings.Join(bad, "; "))
		return
	}
	a.add(CheckCertCA, f.Rel, report.OK, "%s: a self-signed CA", f.Path)
}

func (a *nodeAudit) leafProperties(f *fileData, c *x509.Certificate) {
	if c.IsCA {
		a.add(CheckCertCA, f.Rel, report.Fail, "%s: a leaf certificate marked as a CA (CA:TRUE): it could sign certificates", f.Path)
		return
	}
	a.add(CheckCertCA, f.Rel, report.OK, "%s: not a CA", f.Path)
}

// signedBy reports whether c is signed by ca.
func signedBy(c, ca *x509.Certificate) error {
	if !bytes.Equal(c.RawIssuer, ca.RawSubject) {
		return fmt.Errorf("issuer %q is not the CA's subject %q", c.Issuer.String(), ca.Subject.String())
	}
	return c.CheckSignatureFrom(ca)
}

// signer checks that c is signed by the CA caBase, and names the CA that did
// sign it when another one of the node did.
func (a *nodeAudit) signer(check, rel, path string, c *x509.Certificate, caBase string) {
	ca := a.cas[caBase]
	if ca == nil {
		a.add(check, rel, report.Fail, "%s: not verified: the issuing CA %s.crt could not be loaded", path, caBase)
		return
	}
	err := signedBy(c, ca.Cert)
	if err == nil {
		a.add(check, rel, report.OK, "%s: signed by %s.crt", path, caBase)
		return
	}
	for _, other := range []string{caCluster, caFrontProxy, caEtcd} {
		if o := a.cas[other]; other != caBase && o != nil && signedBy(c, o.Cert) == nil {
			a.add(check, rel, report.Fail, "%s: signed by %s.crt, not by %s.crt", path, other, caBase)
			return
		}
	}
	a.add(check, rel, report.Fail, "%s: not signed by %s.crt (issuer %q): %v", path, caBase, c.Issuer.String(), err)
}

// subject judges CN (when cn is not empty) and O (when judgeO): want is what
// kubeadm sets, legacy what an older kubeadm set (a warning).
func (a *nodeAudit) subject(rel, path string, c *x509.Certificate, cn string, judgeO bool, want, legacy []string) {
	var bad []string
	if cn != "" && c.Subject.CommonName != cn {
		bad = append(bad, fmt.Sprintf("CN=%q, kubeadm sets %q", c.Subject.CommonName, cn))
	}
	got := slices.Clone(c.Subject.Organization)
	slices.Sort(got)
	w := slices.Clone(want)
	slices.Sort(w)
	orgOK := !judgeO || slices.Equal(got, w)
	isLegacy := !orgOK && len(legacy) > 0 && slices.Equal(got, legacy)
	if !orgOK && !isLegacy {
		bad = append(bad, fmt.Sprintf("O=%s, kubeadm %s sets %s", orgString(got), a.versionPhrase(), orgString(w)))
	}
	what := fmt.Sprintf("CN=%q O=%s", c.Subject.CommonName, orgString(got))
	switch {
	case len(bad) > 0:
		a.add(CheckCertSubject, rel, report.Fail, "%s: %s", path, strings.Join(bad, "; "))
	case cn == "" && a.facts.NodeName == "":
		a.add(CheckCertSubject, rel, report.OK, "%s: %s (CN not checked: node name unknown)", path, what)
	case isLegacy && slices.Contains(legacy, groupMasters) && len(want) > 0:
		a.add(CheckCertSubject, rel, report.Warn, "%s: %s: issued before kubeadm 1.29 (renewals keep the subject); kubeadm now sets O=%s, which RBAC can revoke while system:masters cannot be", path, what, orgString(w))
	case isLegacy:
		a.add(CheckCertSubject, rel, report.Warn, "%s: %s: an older kubeadm's subject; current kubeadm sets O=%s", path, what, orgString(w))
	case slices.Equal(got, []string{groupMasters}) && rel == "super-admin.conf":
		a.add(CheckCertSubject, rel, report.Warn, "%s: %s bypasses RBAC: keep super-admin.conf only on the node that ran kubeadm init, or off the nodes", path, what)
	default:
		a.add(CheckCertSubject, rel, report.OK, "%s: %s", path, what)
	}
}

func (a *nodeAudit) versionPhrase() string {
	if a.facts.Version.known() {
		return a.facts.Version.String()
	}
	return "(version unknown: assuming 1.29 or later)"
}

func orgString(o []string) string {
	if len(o) == 0 {
		return "(none)"
	}
	return strings.Join(o, ",")
}

var ekuNames = map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth"}

func (a *nodeAudit) usage(rel, path string, c *x509.Certificate, want []x509.ExtKeyUsage) {
	var missing, names []string
	for _, u := range want {
		if !slices.Contains(c.ExtKeyUsage, u) && !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
			missing = append(missing, ekuNames[u])
		}
		names = append(names, ekuNames[u])
	}
	if len(missing) > 0 {
		a.add(CheckCertUsage, rel, report.Fail, "%s: extended key usage lacks %s (kubeadm issues it for %s)", path, strings.Join(missing, ", "), strings.Join(names, " and "))
		return
	}
	if c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		a.add(CheckCertUsage, rel, report.Fail, "%s: key usage lacks digitalSignature", path)
		return
	}
	a.add(CheckCertUsage, rel, report.OK, "%s: %s", path, strings.Join(names, ", "))
}

// san is one required subject alternative name; empty Value: unknown.
type san struct {
	Value string
	IP    bool
	Why   string // what it is, for messages
}

func (a *nodeAudit) apiserverSANs() []san {
	f := a.facts
	out := []san{{Value: f.NodeName, Why: "node name"}, {Value: f.Address, IP: true, Why: "node address"}}
	if f.ServiceSubnet != "" {
		ip, err := firstServiceIP(f.ServiceSubnet)
		if err == nil {
			out = append(out, san{Value: ip.String(), IP: true, Why: "first IP of the service range " + f.ServiceSubnet})
		} else {
			out = append(out, san{Why: fmt.Sprintf("first IP of the service range (%v)", err)})
		}
	} else {
		out = append(out, san{IP: true, Why: "first IP of the service range"})
	}
	out = append(out, san{Value: "kubernetes"}, san{Value: "kubernetes.default"}, san{Value: "kubernetes.default.svc"})
	if f.DNSDomain != "" {
		out = append(out, san{Value: "kubernetes.default.svc." + f.DNSDomain})
	} else {
		out = append(out, san{Why: "kubernetes.default.svc.<cluster domain>"})
	}
	if f.Endpoint != "" {
		out = append(out, san{Value: f.Endpoint, IP: net.ParseIP(f.Endpoint) != nil, Why: "control-plane endpoint"})
	} else {
		out = append(out, san{Why: "control-plane endpoint"})
	}
	return out
}

func (a *nodeAudit) etcdSANs() []san {
	f := a.facts
	return []san{{Value: "localhost"}, {Value: "127.0.0.1", IP: true}, {Value: "::1", IP: true},
		{Value: f.NodeName, Why: "node name"}, {Value: f.Address, IP: true, Why: "node address"}}
}

func (a *nodeAudit) sans(rel, path string, c *x509.Certificate, want []san) {
	var missing, unknown []string
	for _, s := range want {
		label := s.Value
		if s.Why != "" && s.Value != "" {
			label = fmt.Sprintf("%s (%s)", s.Value, s.Why)
		}
		if s.Value == "" {
			unknown = append(unknown, s.Why)
			continue
		}
		if !hasSAN(c, s.Value) {
			missing = append(missing, label)
		}
	}
	note := ""
	if len(unknown) > 0 {
		note = "; not checked, unknown here: " + strings.Join(unknown, ", ")
	}
	if len(missing) > 0 {
		a.add(CheckCertSAN, rel, report.Fail, "%s: missing subject alternative names: %s%s", path, strings.Join(missing, ", "), note)
		return
	}
	a.add(CheckCertSAN, rel, report.OK, "%s: covers %d required names%s", path, len(want)-len(unknown), note)
}

func hasSAN(c *x509.Certificate, v string) bool {
	if ip := net.ParseIP(v); ip != nil {
		for _, have := range c.IPAddresses {
			if have.Equal(ip) {
				return true
			}
		}
		return false
	}
	for _, d := range c.DNSNames {
		if strings.EqualFold(d, v) {
			return true
		}
	}
	return false
}

func (a *nodeAudit) outlivesCA(rel, path string, c *x509.Certificate, caBase string) {
	ca := a.cas[caBase]
	if ca == nil {
		return
	}
	if c.NotAfter.After(ca.Cert.NotAfter) {
		a.add(CheckCertOutlivesCA, rel, report.Fail, "%s: expires %s, after its CA %s.crt (%s): it stops verifying when the CA expires", path, c.NotAfter.UTC().Format(DateFormat), caBase, ca.Cert.NotAfter.UTC().Format(DateFormat))
		return
	}
	a.add(CheckCertOutlivesCA, rel, report.OK, "%s: expires before its CA %s.crt", path, caBase)
}

// Residual formats a remaining time like kubeadm certs check-expiration.
func Residual(d time.Duration) string {
	if d <= 0 {
		return "<invalid>"
	}
	return duration.HumanDuration(d)
}

func (a *nodeAudit) expiry(rel, path string, c *x509.Certificate) {
	na := c.NotAfter.UTC().Format(DateFormat)
	left := c.NotAfter.Sub(a.now)
	switch {
	case a.now.Before(c.NotBefore):
		a.add(CheckCertExpiry, rel, report.Fail, "%s: not valid before %s (in %s)", path, c.NotBefore.UTC().Format(DateFormat), duration.HumanDuration(c.NotBefore.Sub(a.now)))
	case !a.now.Before(c.NotAfter):
		a.add(CheckCertExpiry, rel, report.Fail, "%s: expired on %s (%s ago)", path, na, duration.HumanDuration(-left))
	case left < a.fail:
		a.add(CheckCertExpiry, rel, report.Fail, "%s: expires on %s, in %s (within --fail-within %s)", path, na, Residual(left), duration.HumanDuration(a.fail))
	case left < a.warn:
		a.add(CheckCertExpiry, rel, report.Warn, "%s: expires on %s, in %s (within --warn-within %s)", path, na, Residual(left), duration.HumanDuration(a.warn))
	default:
		a.add(CheckCertExpiry, rel, report.OK, "%s: expires on %s, in %s", path, na, Residual(left))
	}
}

func (a *nodeAudit) serviceAccount() {
	key, pub := a.snap.file("sa.key"), a.snap.file("sa.pub")
	var k crypto.Signer
	var p crypto.PublicKey
	if a.present(key, "the service-account signing key") {
		a.perms(key, true)
		var err error
		if k, err = LoadPrivateKey(key.Data); err != nil {
			a.add(CheckFileParse, key.Rel, report.Fail, "%s: not a PEM private key: %v", key.Path, err)
		} else {
			a.add(CheckFileParse, key.Rel, report.OK, "%s: %s private key", key.Path, KeyType(k.Public()))
		}
	}
	if a.present(pub, "the service-account public key") {
		a.perms(pub, false)
		var err error
		if p, err = LoadPublicKey(pub.Data); err != nil {
			a.add(CheckFileParse, pub.Rel, report.Fail, "%s: not a PEM public key: %v", pub.Path, err)
		} else {
			a.add(CheckFileParse, pub.Rel, report.OK, "%s: %s public key", pub.Path, KeyType(p))
			if why := keyStrength(p); why != "" {
				a.add(CheckCertKeyType, pub.Rel, report.Fail, "%s: %s key: %s", pub.Path, KeyType(p), why)
			} else {
				a.add(CheckCertKeyType, pub.Rel, report.OK, "%s: %s key", pub.Path, KeyType(p))
			}
			if der, err := x509.MarshalPKIXPublicKey(p); err == nil {
				a.fingerprints["sa"] = fingerprint(der)
			}
		}
	}
	if k != nil && p != nil {
		if samePublicKey(p, k.Public()) {
			a.add(CheckCertKeyMatch, key.Rel, report.OK, "%s: matches sa.pub", key.Path)
		} else {
			a.add(CheckCertKeyMatch, key.Rel, report.Fail, "%s: does not match sa.pub: tokens signed with it fail verification", key.Path)
		}
	}
}

func (a *nodeAudit) kubeconfig(spec kubeconfigSpec) {
	f := a.snap.file(spec.File)
	if !f.Present && spec.Optional && f.Err == nil {
		a.add(CheckFilePresent, f.Rel, report.OK, "%s: absent, as on a control plane that joined (only the node that ran kubeadm init has it)", f.Path)
		return
	}
	if !a.present(f, "kubeadm's "+spec.File) {
		return
	}
	a.perms(f, true)
	kc, err := LoadKubeconfig(f.Data)
	if err != nil {
		a.add(CheckFileParse, f.Rel, report.Fail, "%s: not a kubeconfig: %v", f.Path, err)
		return
	}

	// certificate-authority-data must be ca.crt.
	caData := kc.CAData
	caSrc := "certificate-authority-data"
	if len(caData) == 0 && kc.CAFile != "" {
		caSrc = "certificate-authority " + kc.CAFile
		if r := a.snap.Referenced[a.refPath(kc.CAFile)]; r != nil && r.Data != nil {
			caData = r.Data
		}
	}
	ca := a.cas[caCluster]
	switch {
	case len(caData) == 0:
		a.add(CheckKubeconfigCAData, f.Rel, report.Fail, "%s: %s is empty or unreadable: clients cannot verify the API server", f.Path, caSrc)
	case ca == nil:
		a.add(CheckKubeconfigCAData, f.Rel, report.Fail, "%s: %s not compared: ca.crt could not be loaded", f.Path, caSrc)
	default:
		embedded, err := LoadCertificate(caData)
		switch {
		case err != nil:
			a.add(CheckKubeconfigCAData, f.Rel, report.Fail, "%s: %s is not a PEM certificate: %v", f.Path, caSrc, err)
		case !sameBundle(embedded, ca.Bundle):
			a.add(CheckKubeconfigCAData, f.Rel, report.Fail, "%s: %s is not ca.crt (sha256 %s, ca.crt %s)", f.Path, caSrc, short(fingerprint(embedded[0].Raw)), short(fingerprint(ca.Cert.Raw)))
		default:
			a.add(CheckKubeconfigCAData, f.Rel, report.OK, "%s: %s equals ca.crt", f.Path, caSrc)
		}
	}
	a.server(f, spec, kc.Server, caData, caSrc)

	// The client certificate and key, embedded or referenced.
	certData, certSrc := kc.ClientCertData, "client-certificate-data"
	if len(certData) == 0 && kc.ClientCertFile != "" {
		certSrc = "client-certificate " + kc.ClientCertFile
		r := a.snap.Referenced[a.refPath(kc.ClientCertFile)]
		switch {
		case r == nil || !r.Present:
			a.add(CheckFilePresent, f.Rel, report.Fail, "%s: %s: missing", f.Path, certSrc)
			return
		case r.Err != nil:
			a.add(CheckFileRead, f.Rel, report.Fail, "%s: %s: cannot read: %v", f.Path, certSrc, r.Err)
			return
		}
		certData = r.Data
	}
	if len(certData) == 0 {
		a.add(CheckFileParse, f.Rel, report.Fail, "%s: no client certificate (neither client-certificate-data nor client-certificate)", f.Path)
		return
	}
	certs, err := LoadCertificate(certData)
	if err != nil {
		a.add(CheckFileParse, f.Rel, report.Fail, "%s: %s is not a PEM certificate: %v", f.Path, certSrc, err)
		return
	}
	a.add(CheckFileParse, f.Rel, report.OK, "%s: a kubeconfig for %q with a client certificate", f.Path, kc.Server)
	c := certs[0]

	keyData, keySrc := kc.ClientKeyData, "client-key-data"
	if len(keyData) == 0 && kc.ClientKeyFile != "" {
		keySrc = "client-key " + kc.ClientKeyFile
		if r := a.snap.Referenced[a.refPath(kc.ClientKeyFile)]; r != nil && r.Data != nil {
			keyData = r.Data
		}
	}
	if k, err := LoadPrivateKey(keyData); err != nil {
		a.add(CheckCertKeyMatch, f.Rel, report.Fail, "%s: %s is not a usable private key: %v", f.Path, keySrc, err)
	} else {
		a.keyMatch(f.Rel, f.Path+": "+keySrc, c, k)
	}
	a.keyType(f.Rel, f.Path, c)
	a.leafProperties(f, c)
	a.signer(CheckKubeconfigSigner, f.Rel, f.Path+": "+certSrc, c, caCluster)
	cn := spec.CN
	if spec.CNIsNode {
		cn = ""
		if a.facts.NodeName != "" {
			cn = "system:node:" + a.facts.NodeName
		}
	}
	want, legacy := spec.Orgs(a.facts.Version)
	a.subject(f.Rel, f.Path, c, cn, true, want, legacy)
	a.usage(f.Rel, f.Path, c, usageClient)
	a.outlivesCA(f.Rel, f.Path, c, caCluster)
	a.expiry(f.Rel, f.Path, c)
	a.clusterSigned[f.Rel] = c
	st := CertStatus{Node: a.facts.NodeName, File: f.Rel, Name: spec.File, CN: c.Subject.CommonName, O: c.Subject.Organization,
		CA: "ca", NotBefore: c.NotBefore, NotAfter: c.NotAfter, Residual: c.NotAfter.Sub(a.now), KeyType: KeyType(c.PublicKey)}
	if ca != nil {
		st.ExternallyManaged = ca.External
	}
	a.certs = append(a.certs, st)
}

func (a *nodeAudit) refPath(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return a.snap.Dirs.Kubeconfig + "/" + p
}

func sameBundle(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// etcdSeparate: the etcd CA must not be the cluster CA (CIS 2.7): another
// key, and nothing the cluster CA signed verifies against it.
func (a *nodeAudit) etcdSeparate() {
	etcd, cluster := a.cas[caEtcd], a.cas[caCluster]
	if etcd == nil || cluster == nil {
		return
	}
	const rel = "etcd/ca.crt"
	if samePublicKey(etcd.Cert.PublicKey, cluster.Cert.PublicKey) {
		a.add(CheckEtcdCASeparate, rel, report.Fail, "%s/%s: has the key of ca.crt: whatever the cluster CA signs can reach etcd (CIS 2.7 wants a separate etcd CA)", a.snap.Dirs.PKI, rel)
		return
	}
	var through []string
	for file, c := range a.clusterSigned {
		if signedBy(c, etcd.Cert) == nil {
			through = append(through, file)
		}
	}
	slices.Sort(through)
	if len(through) > 0 {
		a.add(CheckEtcdCASeparate, rel, report.Fail, "%s/%s: certificates of the cluster CA verify against it: %s (CIS 2.7)", a.snap.Dirs.PKI, rel, strings.Join(through, ", "))
		return
	}
	a.add(CheckEtcdCASeparate, rel, report.OK, "%s/%s: a key of its own; nothing signed by ca.crt verifies against it", a.snap.Dirs.PKI, rel)
}

func fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// compareNodes: every control plane holds the same three CAs and the same
// service-account key pair.
func compareNodes(audits []*nodeAudit) []report.Finding {
	if len(audits) < 2 {
		return nil
	}
	var out []report.Finding
	type item struct{ key, file, check, what string }
	items := []item{
		{caCluster, "ca.crt", CheckClusterSameCA, "cluster CA"},
		{caFrontProxy, "front-proxy-ca.crt", CheckClusterSameCA, "front-proxy CA"},
		{caEtcd, "etcd/ca.crt", CheckClusterSameCA, "etcd CA"},
		{"sa", "sa.pub", CheckClusterSameSA, "service-account key pair"},
	}
	for _, it := range items {
		count := map[string]int{}
		var order []string
		for _, a := range audits {
			fp, ok := a.fingerprints[it.key]
			if !ok {
				continue
			}
			if count[fp] == 0 {
				order = append(order, fp)
			}
			count[fp]++
		}
		if len(order) == 0 {
			continue
		}
		// The reference is the most common one; ties go to the first node.
		ref := order[0]
		for _, fp := range order {
			if count[fp] > count[ref] {
				ref = fp
			}
		}
		var refNodes []string
		for _, a := range audits {
			if a.fingerprints[it.key] == ref {
				refNodes = append(refNodes, a.facts.NodeName)
			}
		}
		for _, a := range audits {
			fp, ok := a.fingerprints[it.key]
			if !ok {
				continue
			}
			f := report.Finding{Node: a.facts.NodeName, Check: it.check, File: it.file}
			if fp == ref {
				f.Severity = report.OK
				f.Message = fmt.Sprintf("%s: the same %s on %s (sha256 %s)", it.file, it.what, strings.Join(refNodes, ", "), short(fp))
			} else {
				f.Severity = report.Fail
				f.Message = fmt.Sprintf("%s: a different %s (sha256 %s) from %s (sha256 %s): control planes must share it", it.file, it.what, short(fp), strings.Join(refNodes, ", "), short(ref))
			}
			out = append(out, f)
		}
	}
	return out
}
