// Package pki audits the PKI of kubeadm control planes: every certificate,
// key and kubeconfig kubeadm writes, judged as kubeadm makes them.
//
// Check reads each control plane of an inventory over its one connection
// (through sudo for a non-root user; all nodes in parallel, each node's files
// in parallel, bounded by Options.Concurrency), or a node's directories on
// this machine (Options.Local: cron on the node itself, or a copy). The
// kube-apiserver and etcd static pod manifests, when present, tell the node's
// address, service range, Kubernetes version, certificates directory and
// whether etcd is kubeadm's local (stacked) one. The inventory supplies the
// node name, address, DNS domain and control-plane endpoint in remote mode; in
// local mode the endpoint comes from admin.conf's server, the node name from
// etcd.yaml's --name (or LocalSource.NodeName, else the host name), and
// whatever remains unknown is named in the findings as not checked.
//
// Every finding has a node, a stable check id, the file relative to its
// directory ("etcd/ca.crt", "admin.conf"), a severity (ok, warn, fail) and a
// message naming the file. The check ids:
//
//	node.read           the node could be connected to and its directories listed (fail: nothing else was judged)
//	etcd.mode           stacked or external etcd, and how that was learnt (always ok)
//	file.present        a file kubeadm writes is there; a CA key that is absent makes the CA
//	                    "externally managed" (ok), as kubeadm treats it; super-admin.conf may be absent;
//	                    an external etcd has no etcd files
//	file.read           the file could be read
//	file.parse          PEM certificates, private keys, sa.pub and kubeconfigs parse
//	file.mode           private keys and kubeconfigs 0600, certificates and sa.pub no wider than 0644 (CIS 1.1.13-1.1.21)
//	file.owner          root:root (CIS 1.1.14-1.1.19)
//	cert.ca             CAs are self-signed CAs with certificate signing; leaves are not CAs
//	cert.signer         a leaf verifies against the CA kubeadm issues it from (ca, front-proxy-ca, etcd/ca)
//	cert.subject        CN and O as kubeadm sets them for the cluster's version: apiserver-kubelet-client and
//	                    admin.conf O=kubeadm:cluster-admins since 1.29 (system:masters from before: warn);
//	                    super-admin.conf O=system:masters (warn: it bypasses RBAC); kubelet.conf
//	                    CN=system:node:<node> O=system:nodes; etcd server/peer CN=<node>; etcd clients no O
//	cert.usage          extended key usages: serverAuth, clientAuth, both for etcd server and peer
//	cert.san            apiserver: node name and address, first service IP, kubernetes, kubernetes.default,
//	                    kubernetes.default.svc, kubernetes.default.svc.<domain>, the control-plane endpoint host;
//	                    etcd server and peer: localhost, 127.0.0.1, ::1, node name and address
//	cert.key-match      the private key matches the certificate; sa.key matches sa.pub
//	cert.key-type       key type and size: RSA 2048 or more, ECDSA P-256 or P-384
//	cert.expiry         not yet valid, expired, or within FailWithin: fail; within WarnWithin: warn
//	cert.outlives-ca    a certificate must not expire after its CA
//	etcd.ca-separate    the etcd CA has its own key and nothing signed by ca verifies against it (CIS 2.7)
//	kubeconfig.ca-data  a kubeconfig's certificate-authority-data equals ca.crt
//	kubeconfig.signer   a kubeconfig's client certificate verifies against ca.crt
//	cluster.same-ca     every control plane holds the same ca, front-proxy-ca and etcd/ca (the most common
//	                    one is the reference; the others fail)
//	cluster.same-sa     every control plane holds the same service-account key pair
//
// Result also lists every certificate (CertStatus) with kubeadm's name for it,
// so that its NotAfter can be compared with `kubeadm certs check-expiration`;
// WriteTable prints them like that command, WriteProm as Prometheus text for
// node_exporter's textfile collector. LoadCertificate and LoadKubeconfig are
// the parsers the audit uses; they never panic on any input (fuzzed).
package pki
