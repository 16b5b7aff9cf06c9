package pki

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kbootstrap/kbootstrap/kubeadm"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/report"
)

// maxSudoReads bounds the files read at once through sudo on one node,
// well below sshd's default MaxSessions of 10 sessions per connection.
const maxSudoReads = 4

// Default thresholds of the expiry check.
const (
	DefaultWarnWithin = 30 * 24 * time.Hour
	DefaultFailWithin = 7 * 24 * time.Hour
)

// Options configure Check. Either Local is set (audit directories on this
// machine) or Inventory, Nodes and Connector are (audit the control planes
// over their connections).
type Options struct {
	Inventory *inventory.Inventory
	// Nodes are the control planes to audit, in report order.
	Nodes     []inventory.Node
	Connector node.Connector
	// Concurrency bounds the nodes audited at once and the files read at
	// once on each node; 0 means 20.
	Concurrency int

	Local *LocalSource

	// WarnWithin and FailWithin: a certificate expiring within them is a
	// warning or a failure. Zero means the defaults (30 and 7 days); a
	// negative value means no window (only expired certificates fail).
	WarnWithin, FailWithin time.Duration
	// Now is the audit's clock; nil means time.Now.
	Now func() time.Time
}

// LocalSource is a control plane's directories on this machine: the node
// itself (from cron) or a copy.
type LocalSource struct {
	PKIDir        string // kubeadm's certificatesDir
	KubeconfigDir string // where admin.conf & co live; default: parent of PKIDir
	// ManifestsDir holds the static pod manifests (kube-apiserver.yaml,
	// etcd.yaml) that tell the node's addresses, service range, version and
	// etcd mode; "" when unknown: the checks that need them say so.
	ManifestsDir string
	// NodeName is the node the directories belong to; default: etcd.yaml's
	// --name, else this machine's host name.
	NodeName string
	// DNSDomain is the cluster's DNS domain; "" when unknown.
	DNSDomain string
	// KubeletPKIDir holds the kubelet's serving certificate; "" skips its
	// check.
	KubeletPKIDir string
	// Node reads the files; nil means node.NewLocal.
	Node node.Node
}

// CertStatus is one certificate as found on a node.
type CertStatus struct {
	Node string `json:"node"`
	// File is relative to the audited directory: "apiserver.crt",
	// "etcd/ca.crt", "admin.conf".
	File string `json:"file"`
	// Name is kubeadm's name, as `kubeadm certs check-expiration` prints it
	// ("apiserver", "etcd-ca", "admin.conf").
	Name              string        `json:"name"`
	CN                string        `json:"cn"`
	O                 []string      `json:"o,omitempty"`
	IsCA              bool          `json:"isCA"`
	CA                string        `json:"ca,omitempty"` // issuing CA, kubeadm's name
	NotBefore         time.Time     `json:"notBefore"`
	NotAfter          time.Time     `json:"notAfter"`
	Residual          time.Duration `json:"residual"`
	ExternallyManaged bool          `json:"externallyManaged"`
	KeyType           string        `json:"keyType,omitempty"`
	// Severity is the worst finding about this file (and its key).
	Severity report.Severity `json:"severity"`
}

// Result is the outcome of an audit.
type Result struct {
	Findings     report.Findings
	Certificates []CertStatus
	// Nodes are the audited nodes, in order (those that failed included).
	Nodes []string
	// Time is when the audit ran.
	Time time.Time
}

func (o *Options) withDefaults() Options {
	c := *o
	if c.Concurrency <= 0 {
		c.Concurrency = 20
	}
	if c.WarnWithin == 0 {
		c.WarnWithin = DefaultWarnWithin
	}
	if c.FailWithin == 0 {
		c.FailWithin = DefaultFailWithin
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.WarnWithin, c.FailWithin = max(c.WarnWithin, 0), max(c.FailWithin, 0)
	return c
}

// Check audits the PKI of every control plane of opts (or of the local
// directories) as kubeadm makes it. The result holds the findings of every
// node that could be read; a node that could not be read is a fail finding
// (check node.read) and one of the joined errors, each naming its node.
func Check(ctx context.Context, opts Options) (*Result, error) {
	o := opts.withDefaults()
	if o.WarnWithin > 0 && o.FailWithin > o.WarnWithin {
		return nil, fmt.Errorf("--fail-within %s is longer than --warn-within %s", o.FailWithin, o.WarnWithin)
	}
	now := o.Now()
	res := &Result{Time: now}
	if o.Local != nil {
		a, err := checkLocal(ctx, o, now)
		if err != nil {
			return nil, err
		}
		res.Nodes = []string{a.facts.NodeName}
		res.Findings.Findings = a.findings
		res.Certificates = a.certs
		res.finish()
		return res, nil
	}
	if o.Connector == nil {
		return nil, errors.New("pki.Check: neither a local source nor a connector")
	}
	if len(o.Nodes) == 0 {
		return nil, errors.New("pki.Check: no control-plane node to audit")
	}

	audits := make([]*nodeAudit, len(o.Nodes))
	errs := make([]error, len(o.Nodes))
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for i, n := range o.Nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			audits[i], errs[i] = checkRemote(ctx, o, n, now)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("node %s: %w", n.Name, errs[i])
			}
		}()
	}
	wg.Wait()

	var ok []*nodeAudit
	for i, n := range o.Nodes {
		res.Nodes = append(res.Nodes, n.Name)
		if errs[i] != nil {
			res.Findings.Add(report.Finding{Node: n.Name, Check: CheckNodeRead, Severity: report.Fail, Message: errs[i].Error()})
			continue
		}
		res.Findings.Findings = append(res.Findings.Findings, audits[i].findings...)
		res.Certificates = append(res.Certificates, audits[i].certs...)
		ok = append(ok, audits[i])
	}
	res.Findings.Findings = append(res.Findings.Findings, compareNodes(ok)...)
	res.finish()
	return res, errors.Join(errs...)
}

func checkRemote(ctx context.Context, o Options, in inventory.Node, now time.Time) (*nodeAudit, error) {
	conn, err := o.Connector.Connect(ctx, in)
	if err != nil {
		return nil, err
	}
	// Through sudo every read is a command, i.e. an SSH session of the
	// connection, and sshd refuses more than MaxSessions (10 by default)
	// at once: read each step's files with one command, and bound the
	// fallback. A privileged connection reads over its one SFTP session.
	perNode := o.Concurrency
	if !conn.Privileged() {
		perNode = min(perNode, maxSudoReads)
	}
	n := node.Sudo(conn)
	d := dirs{PKI: kubeadm.PKIDir, Kubeconfig: kubeadm.KubernetesDir, Manifests: kubeadm.ManifestsDir, KubeletPKI: kubeadm.KubeletPKIDir, PKIFromManifest: true, Batch: !conn.Privileged()}
	snap, err := gather(ctx, n, d, perNode)
	if err != nil {
		return nil, err
	}
	f := remoteFacts(o.Inventory, in, snap)
	return audit(snap, f, o, now), nil
}

func checkLocal(ctx context.Context, o Options, now time.Time) (*nodeAudit, error) {
	l := o.Local
	if l.PKIDir == "" {
		return nil, errors.New("local audit: no PKI directory given")
	}
	d := dirs{PKI: l.PKIDir, Kubeconfig: l.KubeconfigDir, Manifests: l.ManifestsDir, KubeletPKI: l.KubeletPKIDir}
	if d.Kubeconfig == "" {
		d.Kubeconfig = filepath.Dir(filepath.Clean(l.PKIDir))
	}
	n := l.Node
	name := l.NodeName
	if n == nil {
		label := name
		if label == "" {
			label = "local"
		}
		n = node.NewLocal(label, nil)
	}
	snap, err := gather(ctx, n, d, o.Concurrency)
	if err != nil {
		return nil, fmt.Errorf("local audit of %s: %w", l.PKIDir, err)
	}
	f := localFacts(l, snap)
	snap.Node = f.NodeName
	return audit(snap, f, o, now), nil
}

// remoteFacts: what a control plane of the inventory should be, refined by
// its manifests (the service range and version it really runs).
func remoteFacts(inv *inventory.Inventory, in inventory.Node, s *snapshot) facts {
	var f facts
	f.set(&f.NodeName, "node name", in.Name, "inventory")
	f.set(&f.Address, "address", in.InternalIP(), "inventory")
	if s.APIServer != nil {
		f.set(&f.ServiceSubnet, "service range", s.APIServer.Flags["service-cluster-ip-range"], "kube-apiserver.yaml")
		f.Version = imageVersion(s.APIServer.Image)
	}
	if inv != nil {
		f.set(&f.ServiceSubnet, "service range", inv.ServiceSubnet, "inventory")
		f.set(&f.DNSDomain, "DNS domain", inv.DNSDomain, "inventory")
		f.set(&f.Endpoint, "control-plane endpoint", endpointHost(inv.Endpoint()), "inventory")
		if !f.Version.known() {
			f.Version = parseVersion(inv.KubernetesVersion)
		}
	}
	f.set(&f.ServiceSubnet, "service range", "10.96.0.0/12", "kubeadm default")
	f.set(&f.DNSDomain, "DNS domain", "cluster.local", "kubeadm default")
	f.Etcd = etcdModeOf(s)
	return f
}

// localFacts: what the manifests and kubeconfigs of the directories tell.
func localFacts(l *LocalSource, s *snapshot) facts {
	var f facts
	f.set(&f.NodeName, "node name", l.NodeName, "--node-name")
	if s.Etcd != nil {
		f.set(&f.NodeName, "node name", s.Etcd.Flags["name"], "etcd.yaml")
	}
	if f.NodeName == "" {
		if h, err := os.Hostname(); err == nil {
			f.set(&f.NodeName, "node name", h, "host name")
		}
	}
	if s.APIServer != nil {
		f.set(&f.Address, "address", s.APIServer.Flags["advertise-address"], "kube-apiserver.yaml")
		f.set(&f.ServiceSubnet, "service range", s.APIServer.Flags["service-cluster-ip-range"], "kube-apiserver.yaml")
		f.Version = imageVersion(s.APIServer.Image)
	}
	if s.Etcd != nil {
		f.set(&f.Address, "address", serverHost(firstOf(s.Etcd.Flags["advertise-client-urls"])), "etcd.yaml")
	}
	f.set(&f.DNSDomain, "DNS domain", l.DNSDomain, "--dns-domain")
	// kubeadm writes the controlPlaneEndpoint (or the advertise address
	// when there is none) as admin.conf's server.
	if a := s.file("admin.conf"); a.Data != nil {
		if kc, err := LoadKubeconfig(a.Data); err == nil {
			f.set(&f.Endpoint, "control-plane endpoint", serverHost(kc.Server), "admin.conf")
		}
	}
	f.Etcd = etcdModeOf(s)
	return f
}

// firstOf returns the first element of a comma-separated list.
func firstOf(list string) string {
	first, _, _ := strings.Cut(list, ",")
	return first
}

// etcdModeOf decides between stacked and external etcd from the manifests:
// kubeadm writes etcd.yaml only for its local etcd.
func etcdModeOf(s *snapshot) etcdMode {
	switch {
	case s.Etcd != nil:
		return etcdStacked
	case s.APIServer != nil:
		return etcdExternal
	}
	return etcdUnknown
}

// finish sorts findings and rates every certificate by its findings.
func (r *Result) finish() {
	worst := map[[2]string]report.Severity{}
	rank := map[report.Severity]int{report.OK: 0, report.Warn: 1, report.Fail: 2}
	for _, fd := range r.Findings.Findings {
		k := [2]string{fd.Node, rowFile(fd.File)}
		if cur, ok := worst[k]; !ok || rank[fd.Severity] > rank[cur] {
			worst[k] = fd.Severity
		}
	}
	for i := range r.Certificates {
		c := &r.Certificates[i]
		c.Severity = report.OK
		if s, ok := worst[[2]string{c.Node, c.File}]; ok {
			c.Severity = s
		}
	}
	order := map[string]int{}
	for i, n := range r.Nodes {
		order[n] = i
	}
	sort.SliceStable(r.Certificates, func(i, j int) bool {
		a, b := r.Certificates[i], r.Certificates[j]
		if a.Node != b.Node {
			return order[a.Node] < order[b.Node]
		}
		if a.Severity != b.Severity {
			return rank[a.Severity] > rank[b.Severity]
		}
		return a.File < b.File
	})
	r.Findings.Sort()
}

// rowFile maps a finding's file to the certificate row it belongs to: a key
// to its certificate.
func rowFile(f string) string {
	if len(f) > 4 && f[len(f)-4:] == ".key" && f != "sa.key" {
		return f[:len(f)-4] + ".crt"
	}
	return f
}
