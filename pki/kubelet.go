package pki

import (
	"fmt"
	"path"

	"github.com/kbootstrap/kbootstrap/report"
)

// kubeletServing judges the kubelet's serving certificate, which the API
// server meets on kubectl logs/exec/port-forward and metrics-server on every
// scrape. kubeadm does not manage it: the kubelet writes a self-signed
// kubelet.crt at its first start and never renews it, or, with
// serverTLSBootstrap, rotates kubelet-server-current.pem, signed by the
// cluster CA through a CSR someone must approve.
func (a *nodeAudit) kubeletServing() {
	dir := a.snap.Dirs.KubeletPKI
	if dir == "" {
		return
	}
	cur := a.snap.KubeletServing
	switch {
	case !a.snap.KubeletSeen:
		a.add(CheckKubeletServing, dir, report.OK, "%s: absent: no kubelet has run on this node, so there is no serving certificate to check", dir)
		return
	case cur == nil:
		a.add(CheckKubeletServing, dir, report.Warn, "%s: no serving certificate (kubelet.crt, or kubelet-server-current.pem with serverTLSBootstrap): kubectl logs and exec cannot reach this node's pods (a CSR waiting for approval?)", dir)
		return
	}
	if !a.present(cur, "the kubelet's serving certificate") {
		return
	}
	bootstrapped := path.Base(cur.Rel) == "kubelet-server-current.pem"
	certs, err := LoadCertificate(cur.Data)
	if err != nil {
		a.add(CheckFileParse, cur.Rel, report.Fail, "%s: not a PEM certificate: %v", cur.Path, err)
		return
	}
	c := certs[0]
	keyFile := cur
	if bootstrapped {
		if t := a.snap.KubeletServingTarget; t != nil {
			a.perms(t, true)
		}
	} else {
		a.perms(cur, false)
		keyFile = a.snap.KubeletKey
		if keyFile == nil {
			a.add(CheckFilePresent, dir+"/kubelet.key", report.Fail, "%s/kubelet.key: missing (the key of kubelet.crt)", dir)
		} else if a.present(keyFile, "the key of kubelet.crt") {
			a.perms(keyFile, true)
		}
	}
	if keyFile != nil && keyFile.Data != nil {
		if k, err := LoadPrivateKey(keyFile.Data); err != nil {
			a.add(CheckCertKeyMatch, keyFile.Rel, report.Fail, "%s: not a usable private key: %v", keyFile.Path, err)
		} else {
			a.keyMatch(keyFile.Rel, keyFile.Path+" and the serving certificate", c, k)
		}
	}
	a.usage(cur.Rel, cur.Path, c, usageServer)

	if bootstrapped {
		// The API server reaches the kubelet at the node's address.
		a.signer(CheckKubeletServing, cur.Rel, cur.Path, c, caCluster)
		want := []san{{Value: a.facts.Address, IP: true, Why: "node address"}}
		if a.facts.Address == "" {
			want = []san{{Why: "node address"}}
		}
		a.sans(cur.Rel, cur.Path, c, want)
		a.expiry(cur.Rel, cur.Path, c)
		return
	}

	issuer := fmt.Sprintf("its own CA %q", c.Issuer.CommonName)
	if ca := a.cas[caCluster]; ca != nil && signedBy(c, ca.Cert) == nil {
		issuer = "ca.crt"
	}
	a.add(CheckKubeletServing, cur.Rel, report.OK, "%s: issued by %s (the kubelet's self-signed default: the API server does not verify it unless --kubelet-certificate-authority is set; serverTLSBootstrap gets one signed by the cluster CA)", cur.Path, issuer)
	if n := a.facts.NodeName; n != "" && !hasSAN(c, n) {
		a.add(CheckCertSAN, cur.Rel, report.Warn, "%s: no subject alternative name for the node name %s: a client that verifies it by name fails", cur.Path, n)
	}
	// The kubelet never renews its self-signed certificate, and nothing
	// verifies it by default: past its date it is a warning, with the cure.
	left := c.NotAfter.Sub(a.now)
	switch {
	case left <= 0:
		a.add(CheckCertExpiry, cur.Rel, report.Warn, "%s: expired on %s; the kubelet does not renew it: delete kubelet.crt and kubelet.key and restart the kubelet for a new one", cur.Path, c.NotAfter.UTC().Format(DateFormat))
	case left < a.warn:
		a.add(CheckCertExpiry, cur.Rel, report.Warn, "%s: expires on %s, in %s; the kubelet does not renew it: delete kubelet.crt and kubelet.key and restart the kubelet for a new one", cur.Path, c.NotAfter.UTC().Format(DateFormat), Residual(left))
	default:
		a.add(CheckCertExpiry, cur.Rel, report.OK, "%s: expires on %s, in %s", cur.Path, c.NotAfter.UTC().Format(DateFormat), Residual(left))
	}
}
