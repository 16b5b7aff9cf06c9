package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/kubeadm"

	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/report"
)

// Audit defaults.
const ()

// AuditOptions tune Audit.
type AuditOptions struct {
	// PKIDir is the directory findings' file names are relative to
	// (default /etc/kubernetes/pki).
	PKIDir string
	// ScanRoots are searched (recursively) for certificates that can act as
	// etcd clients (default /etc/kubernetes).
	ScanRoots []string
	// WarnWithin flags client certificates expiring sooner (default 30 days).
	WarnWithin time.Duration
	// Now is the audit's clock (default time.Now()).
	Now time.Time
	// Timeout bounds each etcd call (default DefaultTimeout).
	Timeout time.Duration
}

// Check identifiers of the etcd audit (stable).
const (
	CheckCIS21            = "cis-2.1" // --cert-file and --key-file
	CheckCIS22            = "cis-2.2" // --client-cert-auth=true
	CheckCIS23            = "cis-2.3" // no --auto-tls
	CheckCIS24            = "cis-2.4" // --peer-cert-file and --peer-key-file
	CheckCIS25            = "cis-2.5" // --peer-client-cert-auth=true
	CheckCIS26            = "cis-2.6" // no --peer-auto-tls
	CheckCIS27            = "cis-2.7" // --trusted-ca-file set
	CheckCIS1223          = "cis-1.2.23"
	CheckCIS1226          = "cis-1.2.26"
	CheckAPIServerFlags   = "apiserver.etcd-flags"
	CheckAPIServerDrift   = "apiserver.process-manifest-drift"
	CheckAPIServerHTTPS   = "apiserver.etcd-servers-https"
	CheckEtcdRunning      = "etcd.running"
	CheckEtcdDrift        = "etcd.process-manifest-drift"
	CheckClientURLsHTTPS  = "etcd.client-urls-https"
	CheckMetricsLoopback  = "etcd.metrics-loopback"
	CheckCANotClusterCA   = "etcd.ca-not-cluster-ca"
	CheckProbeNoCert      = "probe.no-client-cert"
	CheckProbeClusterCA   = "probe.cluster-ca-client-cert"
	CheckProbePlainHTTP   = "probe.plain-http"
	CheckProbeAPIServer   = "probe.apiserver-client"
	CheckAccessClientCert = "access.client-cert"
	CheckCIS1111          = "cis-1.1.11"        // the data directory 0700 or stricter
	CheckDataFiles        = "etcd.data-files"   // nothing under it readable by others
	CheckBackupFiles      = "etcd.backup-files" // snapshots and backups kbootstrap writes on the node
)

// BackupDirs are where kbootstrap keeps etcd snapshots and PKI backups on
// a control plane (etcd snapshot schedule's default, certs renew's backups):
// each holds every Secret or key of the cluster.
var BackupDirs = []string{DefaultSnapshotDir, "/var/lib/kbootstrap/certs-backup"}

// auditor carries one node's audit.
type auditor struct {
	n     node.Node
	opts  AuditOptions
	out   []report.Finding
	api   *NodeFlags
	etcd  *Args // effective configuration of the local etcd
	efile string
}

func (a *auditor) add(check, file string, sev report.Severity, format string, args ...any) {
	a.out = append(a.out, report.Finding{Node: a.n.Name(), Check: check, File: file, Severity: sev, Message: fmt.Sprintf(format, args...)})
}

// rel names a file relative to the PKI directory when it lies inside it.
func (a *auditor) rel(p string) string {
	if r, ok := strings.CutPrefix(p, strings.TrimSuffix(a.opts.PKIDir, "/")+"/"); ok {
		return r
	}
	return p
}

// Audit judges who can reach the etcd of control plane n and whether etcd
// lets anyone else in: the static flags of the live etcd and kube-apiserver
// (falling back to their manifests), live probes through the node, and every
// certificate on the node that etcd would accept as a client. Problems
// reaching the node become failed findings; the error is only for a
// cancelled ctx.
func Audit(ctx context.Context, n node.Node, opts AuditOptions) ([]report.Finding, error) {
	if opts.PKIDir == "" {
		opts.PKIDir = kubeadm.PKIDir
	}
	if len(opts.ScanRoots) == 0 {
		opts.ScanRoots = []string{kubeadm.KubernetesDir}
	}
	if opts.WarnWithin == 0 {
		opts.WarnWithin = 30 * 24 * time.Hour
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	a := &auditor{n: node.Sudo(n), opts: opts}
	a.apiServer(ctx)
	a.etcdStatic(ctx)
	a.dataOnDisk(ctx)
	a.probes(ctx)
	a.access(ctx)
	return a.out, ctx.Err()
}

func (a *auditor) apiServer(ctx context.Context) {
	f, err := DiscoverFlags(ctx, a.n)
	if f.Process == nil && f.Manifest == nil {
		a.add(CheckAPIServerFlags, kubeadm.APIServerManifest, report.Fail, "%v", err)
		return
	}
	a.api = &f
	file := kubeadm.APIServerManifest
	where := "manifest"
	if f.Source == SourceProcess {
		where = fmt.Sprintf("running kube-apiserver (pid %d)", f.PID)
	}
	if f.Cert != "" && f.Key != "" {
		a.add(CheckCIS1223, file, report.OK, "%s: --etcd-certfile=%s --etcd-keyfile=%s", where, f.Cert, f.Key)
	} else {
		a.add(CheckCIS1223, file, report.Fail, "%s: --etcd-certfile and --etcd-keyfile must both be set (the API server must authenticate to etcd)", where)
	}
	if f.CACert != "" {
		a.add(CheckCIS1226, file, report.OK, "%s: --etcd-cafile=%s", where, f.CACert)
	} else {
		a.add(CheckCIS1226, file, report.Fail, "%s: --etcd-cafile is not set (the API server does not verify etcd)", where)
	}
	var plain []string
	for _, ep := range f.Endpoints {
		if e, err := ParseEndpoint(ep); err != nil || e.Scheme != "https" {
			plain = append(plain, ep)
		}
	}
	switch {
	case len(f.Endpoints) == 0:
		a.add(CheckAPIServerHTTPS, file, report.Fail, "%s: --etcd-servers is not set", where)
	case len(plain) > 0:
		a.add(CheckAPIServerHTTPS, file, report.Fail, "%s: --etcd-servers not over https: %s", where, strings.Join(plain, ","))
	default:
		a.add(CheckAPIServerHTTPS, file, report.OK, "%s: --etcd-servers=%s", where, strings.Join(f.Endpoints, ","))
	}
	if len(f.Differences) > 0 {
		a.add(CheckAPIServerDrift, file, report.Warn, "running kube-apiserver differs from its manifest: %s", strings.Join(f.Differences, "; "))
	}
}

func (a *auditor) etcdStatic(ctx context.Context) {
	proc, err := FindProcess(ctx, a.n, etcdProcess, true)
	if err != nil {
		a.add(CheckEtcdRunning, "", report.Fail, "%v", err)
		return
	}
	margv, menv, err := readManifest(ctx, a.n, kubeadm.EtcdManifest, etcdContainer)
	if err != nil {
		a.add(CheckEtcdRunning, kubeadm.EtcdManifest, report.Fail, "%v", err)
	}
	a.efile = kubeadm.EtcdManifest
	var effective Args
	switch {
	case proc != nil:
		cmd := ParseEtcdArgs(proc.Argv)
		var cfg []byte
		if cmd.Has("config-file") {
			cfg, _ = a.n.ReadFile(ctx, cmd.String("config-file"))
			a.efile = cmd.String("config-file")
		}
		effective, err = EtcdEffectiveArgs(cmd, proc.Env, cfg)
		if err != nil {
			a.add(CheckEtcdRunning, a.efile, report.Fail, "etcd (pid %d): %v", proc.PID, err)
			return
		}
		a.add(CheckEtcdRunning, a.efile, report.OK, "etcd runs (pid %d); flags read from the live process", proc.PID)
		if margv != nil {
			if d := ArgDifferences(cmd, ParseEtcdArgs(margv)); len(d) > 0 {
				a.add(CheckEtcdDrift, kubeadm.EtcdManifest, report.Warn, "running etcd differs from its manifest (the checks judge the running process): %s", strings.Join(d, "; "))
			}
		}
	case margv != nil:
		effective, _ = EtcdEffectiveArgs(ParseEtcdArgs(margv), menv, nil)
		a.add(CheckEtcdRunning, kubeadm.EtcdManifest, report.Warn, "no etcd process runs on this node; judging the manifest")
	default:
		a.add(CheckEtcdRunning, "", report.Warn, "no etcd runs on this node and %s does not exist (external etcd?): etcd's own flags were not audited here; run the audit on the etcd hosts", kubeadm.EtcdManifest)
		return
	}
	a.etcd = &effective
	e := effective
	file := a.efile
	both := func(check, f1, f2, why string) {
		if e.String(f1) != "" && e.String(f2) != "" {
			a.add(check, file, report.OK, "--%s=%s --%s=%s", f1, e.String(f1), f2, e.String(f2))
		} else {
			a.add(check, file, report.Fail, "--%s and --%s must both be set: %s", f1, f2, why)
		}
	}
	isTrue := func(check, flag, why string) {
		if v, ok := e.Bool(flag, false); ok && v {
			a.add(check, file, report.OK, "--%s=true", flag)
		} else {
			a.add(check, file, report.Fail, "--%s is %s, must be true: %s", flag, showValue(e.Get(flag)), why)
		}
	}
	notTrue := func(check, flag, why string) {
		if v, ok := e.Bool(flag, false); ok && !v {
			a.add(check, file, report.OK, "--%s is not set to true", flag)
		} else {
			a.add(check, file, report.Fail, "--%s=%s: %s", flag, e.String(flag), why)
		}
	}
	both(CheckCIS21, "cert-file", "key-file", "clients must reach etcd over TLS")
	isTrue(CheckCIS22, "client-cert-auth", "without it etcd accepts clients with no certificate")
	notTrue(CheckCIS23, "auto-tls", "self-signed server certificates; clients cannot verify etcd")
	both(CheckCIS24, "peer-cert-file", "peer-key-file", "members must talk over TLS")
	isTrue(CheckCIS25, "peer-client-cert-auth", "without it anyone can join as a peer")
	notTrue(CheckCIS26, "peer-auto-tls", "self-signed peer certificates")
	if ca := e.String("trusted-ca-file"); ca != "" {
		a.add(CheckCIS27, file, report.OK, "--trusted-ca-file=%s", ca)
	} else {
		a.add(CheckCIS27, file, report.Fail, "--trusted-ca-file is not set: client certificates are not verified against etcd's own CA")
	}

	// Client listeners: every one over TLS.
	clientURLs := e.List("listen-client-urls")
	if !e.Has("listen-client-urls") {
		clientURLs = []string{"http://localhost:2379"} // etcd's default
	}
	var plain []string
	for _, u := range clientURLs {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "unixs://") {
			plain = append(plain, u)
		}
	}
	plain = append(plain, e.List("listen-client-http-urls")...)
	if len(plain) > 0 {
		a.add(CheckClientURLsHTTPS, file, report.Fail, "etcd serves clients without TLS on %s", strings.Join(plain, ","))
	} else {
		a.add(CheckClientURLsHTTPS, file, report.OK, "every client listener is https: %s", strings.Join(clientURLs, ","))
	}

	// Metrics: only on loopback (they are served without authentication).
	metrics := e.List("listen-metrics-urls")
	var exposed []string
	for _, m := range metrics {
		if !isLoopbackURL(m) {
			exposed = append(exposed, m)
		}
	}
	switch {
	case len(metrics) == 0:
		a.add(CheckMetricsLoopback, file, report.OK, "no separate metrics listener (metrics are served on the client port, behind its TLS)")
	case len(exposed) > 0:
		a.add(CheckMetricsLoopback, file, report.Fail, "metrics listener reachable beyond loopback: %s", strings.Join(exposed, ","))
	default:
		a.add(CheckMetricsLoopback, file, report.OK, "metrics only on loopback: %s", strings.Join(metrics, ","))
	}

	// etcd's CA must not be the cluster CA: every client certificate the
	// cluster CA signs (kubelets, admins) would open etcd.
	etcdCA := e.String("trusted-ca-file")
	clusterCA := a.clusterCAFile()
	switch {
	case etcdCA == "":
		a.add(CheckCANotClusterCA, file, report.Fail, "etcd trusts no CA of its own (--trusted-ca-file unset)")
	case clusterCA == "":
		a.add(CheckCANotClusterCA, file, report.Warn, "cluster CA unknown (kube-apiserver --client-ca-file not found); cannot compare with %s", etcdCA)
	default:
		eb, err1 := a.n.ReadFile(ctx, etcdCA)
		cb, err2 := a.n.ReadFile(ctx, clusterCA)
		if err := errors.Join(err1, err2); err != nil {
			a.add(CheckCANotClusterCA, a.rel(etcdCA), report.Fail, "read CAs: %v", err)
			break
		}
		if sameCA(eb, cb) {
			a.add(CheckCANotClusterCA, a.rel(etcdCA), report.Fail, "etcd's CA %s is the cluster CA %s: every client certificate of the cluster can reach etcd", etcdCA, clusterCA)
		} else {
			a.add(CheckCANotClusterCA, a.rel(etcdCA), report.OK, "etcd's CA %s is distinct from the cluster CA %s", etcdCA, clusterCA)
		}
	}
}

// clusterCAFile is the kube-apiserver's --client-ca-file.
func (a *auditor) clusterCAFile() string {
	if a.api == nil {
		return ""
	}
	for _, args := range []*Args{a.api.Process, a.api.Manifest} {
		if args != nil && args.String("client-ca-file") != "" {
			return args.String("client-ca-file")
		}
	}
	return ""
}

// sameCA compares the first certificates' public keys and subjects.
func sameCA(a, b []byte) bool {
	ca, err1 := ParseCertsPEM(a)
	cb, err2 := ParseCertsPEM(b)
	if err1 != nil || err2 != nil {
		return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b))
	}
	return bytes.Equal(ca[0].RawSubjectPublicKeyInfo, cb[0].RawSubjectPublicKeyInfo) && bytes.Equal(ca[0].RawSubject, cb[0].RawSubject)
}

func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// probeTargets are the client endpoints to probe: the API server's etcd
// servers and the local etcd's client listeners (wildcards probed on
// loopback), once each.
func (a *auditor) probeTargets() []Endpoint {
	var raw []string
	if a.api != nil {
		raw = append(raw, a.api.Endpoints...)
	}
	if a.etcd != nil {
		for _, u := range append(a.etcd.List("listen-client-urls"), a.etcd.List("listen-client-http-urls")...) {
			if pu, err := url.Parse(u); err == nil {
				if ip := net.ParseIP(pu.Hostname()); ip != nil && ip.IsUnspecified() {
					pu.Host = joinHostPort("127.0.0.1", pu.Port())
					u = pu.String()
				}
			}
			raw = append(raw, u)
		}
	}
	var out []Endpoint
	seen := map[string]bool{}
	for _, r := range raw {
		e, err := ParseEndpoint(r)
		if err != nil || seen[e.HostPort] {
			continue
		}
		seen[e.HostPort] = true
		out = append(out, e)
	}
	return out
}

func (a *auditor) probes(ctx context.Context) {
	targets := a.probeTargets()
	if len(targets) == 0 {
		a.add(CheckProbeNoCert, "", report.Warn, "no etcd endpoint known on this node: nothing probed")
		return
	}
	// A client certificate from the cluster CA, minted in memory.
	var clusterCert *tls.Certificate
	caFile := a.clusterCAFile()
	clusterNote := ""
	if caFile == "" {
		clusterNote = "cluster CA unknown (kube-apiserver --client-ca-file not found)"
	} else {
		keyFile := strings.TrimSuffix(caFile, path.Ext(caFile)) + ".key"
		caPEM, err1 := a.n.ReadFile(ctx, caFile)
		keyPEM, err2 := a.n.ReadFile(ctx, keyFile)
		if err := errors.Join(err1, err2); err != nil {
			clusterNote = fmt.Sprintf("cannot mint a certificate from the cluster CA: %v", err)
		} else if c, err := MintClientCert(caPEM, keyPEM, "kbootstrap-etcd-audit-probe"); err != nil {
			clusterNote = fmt.Sprintf("cannot mint a certificate from the cluster CA %s: %v", caFile, err)
		} else {
			clusterCert = c
		}
	}
	var creds *Credentials
	if a.api != nil {
		if c, err := ReadCredentials(ctx, a.n, a.api.ClientFlags); err == nil {
			creds = &c
		} else {
			a.add(CheckProbeAPIServer, "", report.Fail, "%v", err)
		}
	}
	for _, t := range targets {
		if t.Scheme != "https" {
			r := ProbePlainHTTP(ctx, a.n, t.HostPort)
			a.judge(CheckProbePlainHTTP, t, r, "plain http")
			continue
		}
		a.judge(CheckProbeNoCert, t, ProbeTLS(ctx, a.n, t.HostPort, t.ServerName, nil), "TLS without a client certificate")
		if clusterCert != nil {
			a.judge(CheckProbeClusterCA, t, ProbeTLS(ctx, a.n, t.HostPort, t.ServerName, clusterCert), "a client certificate signed by the cluster CA")
		} else {
			a.add(CheckProbeClusterCA, "", report.Warn, "%s: not probed: %s", t.URL, clusterNote)
		}
		a.judge(CheckProbePlainHTTP, t, ProbePlainHTTP(ctx, a.n, t.HostPort), "plain http")
		if creds != nil {
			a.apiServerProbe(ctx, t, *creds)
		}
	}
}

// judge turns a probe that must be refused into a finding.
func (a *auditor) judge(check string, t Endpoint, r ProbeResult, what string) {
	switch r.Outcome {
	case Refused:
		a.add(check, "", report.OK, "%s: %s refused (%s)", t.URL, what, r.Detail)
	case Accepted:
		a.add(check, "", report.Fail, "%s: %s ACCEPTED: %s", t.URL, what, r.Detail)
	default:
		a.add(check, "", report.Warn, "%s: %s: %s", t.URL, what, r.Detail)
	}
}

// apiServerProbe proves the API server's own credentials work: member list
// over gRPC, with the server verified against --etcd-cafile.
func (a *auditor) apiServerProbe(ctx context.Context, t Endpoint, creds Credentials) {
	tc, err := creds.TLSConfig()
	if err != nil {
		a.add(CheckProbeAPIServer, "", report.Fail, "%s: %v", t.URL, err)
		return
	}
	cli, err := NewClient(a.n, []string{t.URL}, tc, a.opts.Timeout)
	if err != nil {
		a.add(CheckProbeAPIServer, "", report.Fail, "%v", err)
		return
	}
	defer cli.Close()
	ms, err := cli.Members(ctx)
	if err != nil {
		a.add(CheckProbeAPIServer, a.rel(a.api.Cert), report.Fail, "%s: the API server's credentials were refused or etcd did not answer: %v", t.URL, err)
		return
	}
	a.add(CheckProbeAPIServer, a.rel(a.api.Cert), report.OK, "%s: the API server's credentials are accepted (%d members)", t.URL, len(ms))
}

// kubeadmEtcdClients are the certificates kubeadm issues that etcd accepts.
var kubeadmEtcdClients = map[string]string{
	"apiserver-etcd-client.crt":   "the API server's etcd client",
	"etcd/healthcheck-client.crt": "the etcd liveness probe's client",
	"etcd/server.crt":             "etcd's serving certificate; kubeadm gives it clientAuth too",
	"etcd/peer.crt":               "etcd's peer certificate; kubeadm gives it clientAuth too (peers dial each other as clients)",
}

// access lists every certificate under the scan roots that etcd would accept
// as a client: signed by etcd's CA, usable for clientAuth.
func (a *auditor) access(ctx context.Context) {
	caFile := ""
	if a.etcd != nil {
		caFile = a.etcd.String("trusted-ca-file")
	}
	if caFile == "" && a.api != nil {
		caFile = a.api.CACert
	}
	if caFile == "" {
		a.add(CheckAccessClientCert, "", report.Warn, "etcd's CA is unknown: certificate holders not listed")
		return
	}
	caPEM, err := a.n.ReadFile(ctx, caFile)
	if err != nil {
		a.add(CheckAccessClientCert, a.rel(caFile), report.Fail, "read etcd CA: %v", err)
		return
	}
	cas, err := ParseCertsPEM(caPEM)
	if err != nil {
		a.add(CheckAccessClientCert, a.rel(caFile), report.Fail, "parse etcd CA: %v", err)
		return
	}
	var files []string
	for _, root := range a.opts.ScanRoots {
		files = append(files, a.walkCerts(ctx, root, 4)...)
	}
	slices.Sort(files)
	files = slices.Compact(files)
	found := 0
	for _, f := range files {
		b, err := a.n.ReadFile(ctx, f)
		if err != nil {
			continue
		}
		certs, err := ParseCertsPEM(b)
		if err != nil {
			continue
		}
		c := certs[0]
		if c.IsCA || !signedBy(c, cas) || !clientCapable(c) {
			continue
		}
		found++
		a.holder(ctx, f, c)
	}
	if found == 0 {
		a.add(CheckAccessClientCert, a.rel(caFile), report.Warn, "no certificate under %s chains to etcd's CA with clientAuth (not even the API server's?)", strings.Join(a.opts.ScanRoots, ","))
	}
}

func signedBy(c *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if c.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

func clientCapable(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 {
		return true // no EKU: any use
	}
	return slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// holder reports one certificate etcd accepts as a client and its key file.
func (a *auditor) holder(ctx context.Context, file string, c *x509.Certificate) {
	rel := a.rel(file)
	var keyFile string
	switch {
	case strings.HasSuffix(file, ".crt"):
		keyFile = strings.TrimSuffix(file, ".crt") + ".key"
	case strings.HasSuffix(file, "-cert.pem"):
		keyFile = strings.TrimSuffix(file, "-cert.pem") + "-key.pem"
	default:
		keyFile = strings.TrimSuffix(file, ".pem") + "-key.pem"
	}
	sev := report.OK
	var notes []string
	role, known := kubeadmEtcdClients[rel]
	if known {
		notes = append(notes, role)
	} else {
		sev = report.Warn
		notes = append(notes, "not one of kubeadm's etcd clients: who needs it?")
	}
	left := c.NotAfter.Sub(a.opts.Now)
	switch {
	case left <= 0:
		sev = report.Fail
		notes = append(notes, "EXPIRED")
	case left < a.opts.WarnWithin && sev != report.Fail:
		sev = report.Warn
		notes = append(notes, fmt.Sprintf("expires in %s", left.Round(time.Hour)))
	}
	keyDesc := ""
	ki, err := a.n.Stat(ctx, keyFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		keyDesc = "key " + a.rel(keyFile) + " not found"
	case err != nil:
		keyDesc = fmt.Sprintf("key %s: %v", a.rel(keyFile), err)
	default:
		keyDesc = fmt.Sprintf("key %s %04o uid %d gid %d", a.rel(keyFile), ki.Mode.Perm(), ki.UID, ki.GID)
		if ki.Mode.Perm()&0o077 != 0 || ki.UID != 0 {
			if sev != report.Fail {
				sev = report.Warn
			}
			notes = append(notes, "key readable beyond root (want 0600 root)")
		}
	}
	org := ""
	if len(c.Subject.Organization) > 0 {
		org = " O=" + strings.Join(c.Subject.Organization, ",")
	}
	a.add(CheckAccessClientCert, rel, sev, "CN=%s%s can reach etcd (clientAuth, etcd CA), expires %s; %s; %s",
		c.Subject.CommonName, org, c.NotAfter.UTC().Format(time.RFC3339), keyDesc, strings.Join(notes, "; "))
}

// walkCerts lists *.crt and *.pem files under dir, depth-limited.
func (a *auditor) walkCerts(ctx context.Context, dir string, depth int) []string {
	if depth == 0 {
		return nil
	}
	entries, err := a.n.ReadDir(ctx, dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		p := path.Join(dir, e.Name)
		switch {
		case e.IsDir():
			out = append(out, a.walkCerts(ctx, p, depth-1)...)
		case e.Mode.IsRegular() && (strings.HasSuffix(e.Name, ".crt") || strings.HasSuffix(e.Name, ".pem")) && !strings.HasSuffix(e.Name, "-key.pem"):
			out = append(out, p)
		}
	}
	return out
}

// dataOnDisk judges who can read etcd's data on the node: a database
// readable by others is every Secret of the cluster (CIS 1.1.11), and so is
// a snapshot or a backup.
func (a *auditor) dataOnDisk(ctx context.Context) {
	if a.etcd == nil {
		return // no local etcd: judged on the etcd hosts
	}
	dir := a.etcd.String("data-dir")
	if dir == "" {
		dir = kubeadm.EtcdDataDir
	}
	mode, loose, err := a.looseFiles(ctx, dir)
	switch {
	case err != nil:
		a.add(CheckCIS1111, dir, report.Fail, "%v", err)
		return
	case mode == "":
		a.add(CheckCIS1111, dir, report.Warn, "--data-dir %s does not exist", dir)
		return
	case modeBits(mode)&0o077 != 0:
		a.add(CheckCIS1111, dir, report.Fail, "the etcd data directory is %s: others can read the cluster's database (every Secret); chmod 700 %s", mode, dir)
	default:
		a.add(CheckCIS1111, dir, report.OK, "the etcd data directory is %s", mode)
	}
	if len(loose) > 0 {
		a.add(CheckDataFiles, dir, report.Fail, "readable or writable by others under %s: %s", dir, strings.Join(loose, ", "))
	} else {
		a.add(CheckDataFiles, dir, report.OK, "nothing under %s is open to others", dir)
	}
	for _, b := range BackupDirs {
		mode, loose, err := a.looseFiles(ctx, b)
		switch {
		case err != nil:
			a.add(CheckBackupFiles, b, report.Fail, "%v", err)
		case mode == "":
			a.add(CheckBackupFiles, b, report.OK, "no %s on this node", b)
		case modeBits(mode)&0o077 != 0 || len(loose) > 0:
			a.add(CheckBackupFiles, b, report.Fail, "%s is %s; open to others: %s (snapshots and backups hold every Secret and key: 0700 directories, 0600 files)", b, mode, strings.Join(loose, ", "))
		default:
			a.add(CheckBackupFiles, b, report.OK, "%s is %s, nothing in it open to others", b, mode)
		}
	}
}

// looseFiles returns dir's mode ("" when it does not exist) and the paths
// under it (at most 10) with any group or other permission bit.
func (a *auditor) looseFiles(ctx context.Context, dir string) (string, []string, error) {
	q := node.ShellQuote(dir)
	res, err := a.n.Run(ctx, fmt.Sprintf(`[ -d %[1]s ] || exit 0; stat -c %%a %[1]s; find %[1]s -mindepth 1 ! -type l -perm /077 -printf '%%m %%p\n' 2>/dev/null | head -n 10`, q))
	if err != nil {
		return "", nil, fmt.Errorf("reading the modes under %s: %w", dir, err)
	}
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return "", nil, nil
	}
	var loose []string
	for _, l := range lines[1:] {
		if m, p, ok := strings.Cut(l, " "); ok {
			loose = append(loose, p+" ("+m+")")
		}
	}
	return lines[0], loose, nil
}

// modeBits parses an octal mode as stat prints it.
func modeBits(s string) uint64 {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0o777
	}
	return v
}
