package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/kbootstrap/kbootstrap/report"
)

// server judges a kubeconfig's server URL: https, a host that is the
// control-plane endpoint or this node's address (the components on the node
// may also use loopback), and an API server that a client of this
// kubeconfig would accept: this node's apiserver.crt verified against the
// kubeconfig's CA for that host, as client-go's TLS handshake does.
func (a *nodeAudit) server(f *fileData, spec kubeconfigSpec, server string, caData []byte, caSrc string) {
	u, err := url.Parse(server)
	switch {
	case server == "":
		a.add(CheckKubeconfigServer, f.Rel, report.Fail, "%s: no server URL", f.Path)
		return
	case err != nil:
		a.add(CheckKubeconfigServer, f.Rel, report.Fail, "%s: server %q is not a URL: %v", f.Path, server, err)
		return
	case u.Scheme != "https":
		a.add(CheckKubeconfigServer, f.Rel, report.Fail, "%s: server %s is not https: the client would send its credentials unprotected, and kubeadm's API server speaks only TLS", f.Path, server)
		return
	case u.Hostname() == "":
		a.add(CheckKubeconfigServer, f.Rel, report.Fail, "%s: server %s names no host", f.Path, server)
		return
	}
	host := u.Hostname()
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			a.add(CheckKubeconfigServer, f.Rel, report.Fail, "%s: server %s: bad port %q", f.Path, server, p)
			return
		}
	}
	// Where kubeadm points each kubeconfig: admin.conf and super-admin.conf
	// at the control-plane endpoint; controller-manager.conf and
	// scheduler.conf at the node's own API server; kubelet.conf at either
	// (ControlPlaneKubeletLocalMode).
	var want []string
	var what []string
	if a.facts.Endpoint != "" {
		want = append(want, a.facts.Endpoint)
		what = append(what, fmt.Sprintf("the control-plane endpoint %s (from %s)", a.facts.Endpoint, a.facts.From["control-plane endpoint"]))
	}
	if a.facts.Address != "" {
		want = append(want, a.facts.Address)
		what = append(what, fmt.Sprintf("this node's address %s (from %s)", a.facts.Address, a.facts.From["address"]))
	}
	onNode := spec.File != "admin.conf" && spec.File != "super-admin.conf"
	if onNode {
		want = append(want, "127.0.0.1", "::1", "localhost")
	}
	switch {
	case onNode && a.facts.Address == "" && !slices.ContainsFunc(want, func(w string) bool { return sameHost(w, host) }):
		a.add(CheckKubeconfigServer, f.Rel, report.OK, "%s: server %s: not compared: this node's address is unknown here (no kube-apiserver manifest)", f.Path, server)
	case len(what) == 0:
		a.add(CheckKubeconfigServer, f.Rel, report.Warn, "%s: server %s: not compared: neither the control-plane endpoint nor this node's address is known here", f.Path, server)
	case !slices.ContainsFunc(want, func(w string) bool { return sameHost(w, host) }):
		a.add(CheckKubeconfigServer, f.Rel, report.Fail, "%s: server %s is neither %s: a kubeconfig of another cluster, or of an address this node no longer has", f.Path, server, strings.Join(what, " nor "))
		return
	default:
		a.add(CheckKubeconfigServer, f.Rel, report.OK, "%s: server %s", f.Path, server)
	}

	// Would a client of this kubeconfig accept this node's API server? A
	// load balancer at the endpoint may send it to any control plane, so
	// every control plane's certificate must verify for the host named.
	api := a.clusterSigned["apiserver.crt"]
	if api == nil || len(caData) == 0 {
		return
	}
	roots, err := LoadCertificate(caData)
	if err != nil {
		return // the CA check above has said why
	}
	pool := x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	_, err = api.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, CurrentTime: a.now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	var hostErr x509.HostnameError
	switch {
	case err == nil:
		a.add(CheckKubeconfigServer, f.Rel, report.OK, "%s: this node's apiserver.crt verifies for %s against its %s", f.Path, host, caSrc)
	case errors.As(err, &hostErr):
		a.add(CheckKubeconfigServer, f.Rel, report.Fail, "%s: a client of it would reject this node's API server: %v", f.Path, err)
	default:
		// Another CA, an expired certificate: the CA, signer and expiry
		// checks report those, on the file at fault.
	}
}

// sameHost compares two host names or addresses (IPv6 in any notation).
func sameHost(a, b string) bool {
	a, b = strings.Trim(a, "[]"), strings.Trim(b, "[]")
	if ia, ib := net.ParseIP(a), net.ParseIP(b); ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return strings.EqualFold(a, b)
}
