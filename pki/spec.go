package pki

import "crypto/x509"

// The groups kubeadm puts in client certificates.
const (
	groupClusterAdmins = "kubeadm:cluster-admins"
	groupMasters       = "system:masters"
	groupNodes         = "system:nodes"
)

// sanKind selects which subject alternative names a certificate must carry.
type sanKind int

const (
	sanNone sanKind = iota
	sanAPIServer
	sanEtcd
)

// certSpec is one certificate (and key) that kubeadm writes in the
// certificates directory.
type certSpec struct {
	Name   string // kubeadm's name, as check-expiration prints it
	Base   string // path without extension, relative to the PKI directory
	CA     string // Base of the issuing CA; "" for a CA
	CN     string // expected common name; ignored when CNIsNode
	Orgs   func(v version) (want []string, legacy []string)
	Usages []x509.ExtKeyUsage
	SANs   sanKind
	Etcd   bool // written only for a stacked (local) etcd

	CNIsNode bool // CN is the node name (etcd server and peer)
}

// The CAs, by Base.
const (
	caCluster    = "ca"
	caFrontProxy = "front-proxy-ca"
	caEtcd       = "etcd/ca"
)

// caName maps a CA's Base to kubeadm's name for it.
func caName(base string) string {
	switch base {
	case caEtcd:
		return "etcd-ca"
	}
	return base
}

func noOrgs(version) ([]string, []string) { return nil, []string{groupMasters} }

// adminOrgs is what kubeadm puts in the admin client certificates
// (apiserver-kubelet-client, admin.conf): kubeadm:cluster-admins since 1.29,
// system:masters before (kept by renewals on upgraded clusters).
func adminOrgs(v version) ([]string, []string) {
	if v.known() && v.less(1, 29) {
		return []string{groupMasters}, nil
	}
	return []string{groupClusterAdmins}, []string{groupMasters}
}

var (
	usageServer = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	usageClient = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	usageBoth   = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
)

// certSpecs lists kubeadm's certificates (GetDefaultCertList), CAs first.
func certSpecs() []certSpec {
	return []certSpec{
		{Name: "ca", Base: caCluster, CN: "kubernetes"},
		{Name: "front-proxy-ca", Base: caFrontProxy, CN: "front-proxy-ca"},
		{Name: "etcd-ca", Base: caEtcd, CN: "etcd-ca", Etcd: true},
		{Name: "apiserver", Base: "apiserver", CA: caCluster, CN: "kube-apiserver", Orgs: func(version) ([]string, []string) { return nil, nil }, Usages: usageServer, SANs: sanAPIServer},
		{Name: "apiserver-kubelet-client", Base: "apiserver-kubelet-client", CA: caCluster, CN: "kube-apiserver-kubelet-client", Orgs: adminOrgs, Usages: usageClient},
		{Name: "front-proxy-client", Base: "front-proxy-client", CA: caFrontProxy, CN: "front-proxy-client", Orgs: func(version) ([]string, []string) { return nil, nil }, Usages: usageClient},
		{Name: "etcd-server", Base: "etcd/server", CA: caEtcd, CNIsNode: true, Orgs: func(version) ([]string, []string) { return nil, nil }, Usages: usageBoth, SANs: sanEtcd, Etcd: true},
		{Name: "etcd-peer", Base: "etcd/peer", CA: caEtcd, CNIsNode: true, Orgs: func(version) ([]string, []string) { return nil, nil }, Usages: usageBoth, SANs: sanEtcd, Etcd: true},
		{Name: "etcd-healthcheck-client", Base: "etcd/healthcheck-client", CA: caEtcd, CN: "kube-etcd-healthcheck-client", Orgs: noOrgs, Usages: usageClient, Etcd: true},
		{Name: "apiserver-etcd-client", Base: "apiserver-etcd-client", CA: caEtcd, CN: "kube-apiserver-etcd-client", Orgs: noOrgs, Usages: usageClient, Etcd: true},
	}
}

// kubeconfigSpec is one kubeconfig file kubeadm writes.
type kubeconfigSpec struct {
	File     string // relative to the kubeconfig directory
	CN       string
	CNIsNode bool // CN is system:node:<node>
	Orgs     func(v version) (want []string, legacy []string)
	// Optional files may be absent: super-admin.conf exists only on the
	// node that ran kubeadm init (and not before 1.29).
	Optional bool
	// Expiration: listed by kubeadm certs check-expiration.
	Expiration bool
}

func kubeconfigSpecs() []kubeconfigSpec {
	none := func(version) ([]string, []string) { return nil, nil }
	return []kubeconfigSpec{
		{File: "admin.conf", CN: "kubernetes-admin", Orgs: adminOrgs, Expiration: true},
		{File: "super-admin.conf", CN: "kubernetes-super-admin", Orgs: func(version) ([]string, []string) { return []string{groupMasters}, nil }, Optional: true, Expiration: true},
		{File: "controller-manager.conf", CN: "system:kube-controller-manager", Orgs: none, Expiration: true},
		{File: "scheduler.conf", CN: "system:kube-scheduler", Orgs: none, Expiration: true},
		{File: "kubelet.conf", CNIsNode: true, Orgs: func(version) ([]string, []string) { return []string{groupNodes}, nil }},
	}
}
