package renew

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/bootstrap"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/pki"
	"github.com/kbootstrap/kbootstrap/report"
)

// Where kubeadm keeps its files, and where the renewal keeps its own.
const (
	KubernetesDir = "/etc/kubernetes"
	ManifestsDir  = KubernetesDir + "/manifests"
	asideDir      = KubernetesDir + "/kbootstrap-aside"
	StateDir      = "/var/lib/kbootstrap"
	BackupDir     = StateDir + "/certs-backup"
	LockFile      = StateDir + "/certs-renew.lock"
)

// Renewable are the names `kubeadm certs renew` takes, as pki names them.
// kubelet.conf is not one: the kubelet rotates its own credentials.
var Renewable = []string{
	"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
	"apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "front-proxy-client",
	"etcd-healthcheck-client", "etcd-peer", "etcd-server",
}

// components are the static pods restarted, in order: the API server first,
// so that clients kept alive on it move to another control plane while the
// node is drained, then etcd and the rest.
var components = []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler"}

// Options configure Run: either Local (the node itself) or Inventory, Nodes
// and Connector (the control planes over SSH, one at a time, in order).
type Options struct {
	Inventory *inventory.Inventory
	Nodes     []inventory.Node
	Connector node.Connector
	Local     node.Node

	// Within: renew when a certificate expires within it; 0 means 30 days.
	Within time.Duration
	// Certs are kubeadm's names to renew; none means all.
	Certs  []string
	DryRun bool
	// KubeconfigOut is refreshed from the renewed admin.conf, its server set
	// to the control-plane endpoint; "" means none (always none with Local).
	KubeconfigOut string
	// Keep is how many backups stay on a node; 0 means 5.
	Keep int
	// DrainWait is how long a load balancer takes to see a drained API
	// server down (haproxy: inter 2s × fall 3); 0 means 8s.
	DrainWait time.Duration
	// StaleAfter: a lock whose heartbeat is older is taken over; 0 means 2m.
	StaleAfter time.Duration
	// Timeout bounds each wait for a pod to stop, start and be healthy; 0
	// means 3m.
	Timeout time.Duration

	Out    io.Writer
	Status *bootstrap.Status
	Now    func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Within == 0 {
		o.Within = 30 * 24 * time.Hour
	}
	if o.Keep <= 0 {
		o.Keep = 5
	}
	if o.DrainWait == 0 {
		o.DrainWait = 8 * time.Second
	}
	if o.StaleAfter == 0 {
		o.StaleAfter = 2 * time.Minute
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// ErrCAExpiring is returned when a CA itself expires within the window:
// renewing leaves under it would not help.
var ErrCAExpiring = errors.New("a CA expires within the window")

// target is one control plane to renew.
type target struct {
	name string
	in   inventory.Node // zero with Local
	n    node.Node
	due  []pki.CertStatus
}

// Run audits, then renews the control planes whose certificates expire
// within the window, one at a time; it stops at the first node that fails,
// after restoring that node's backup.
func Run(ctx context.Context, opts Options) error {
	o := opts.withDefaults()
	for _, c := range o.Certs {
		if !slices.Contains(Renewable, c) {
			if c == "kubelet.conf" {
				return errors.New("--certs kubelet.conf: the kubelet rotates its own credentials; kubeadm does not renew it")
			}
			return fmt.Errorf("--certs %s: not one of %s", c, strings.Join(Renewable, ", "))
		}
	}
	st := o.Status.Start(fmt.Sprintf("Auditing certificates (renewal window %s)", o.Within))
	res, err := o.audit(ctx, nil, o.Within)
	st.End(err)
	if err != nil {
		return err
	}
	now := o.Now()
	limit := now.Add(o.Within)
	var cas []string
	due := map[string][]pki.CertStatus{}
	var earliest *pki.CertStatus
	for i, c := range res.Certificates {
		if c.IsCA && c.NotAfter.Before(limit) {
			cas = append(cas, fmt.Sprintf("%s on %s expires %s", c.Name, c.Node, c.NotAfter.Format(time.RFC3339)))
		}
		if c.ExternallyManaged || !o.wanted(c.Name) {
			continue
		}
		if earliest == nil || c.NotAfter.Before(earliest.NotAfter) {
			earliest = &res.Certificates[i]
		}
		if c.NotAfter.Before(limit) {
			due[c.Node] = append(due[c.Node], c)
		}
	}
	if len(cas) > 0 {
		return fmt.Errorf("%w: %s; renewing the certificates it signs would not help: renew or rotate the CA first (kubeadm does not renew CAs), then run again", ErrCAExpiring, strings.Join(slices.Compact(cas), "; "))
	}
	if len(due) == 0 {
		msg := fmt.Sprintf("nothing to renew: no certificate expires within %s", o.Within)
		if earliest != nil {
			msg += fmt.Sprintf(" (the first, %s on %s, expires %s)", earliest.Name, earliest.Node, earliest.NotAfter.Format(time.RFC3339))
		}
		fmt.Fprintln(o.Out, msg)
		return nil
	}

	targets, err := o.targets(ctx, res)
	if err != nil {
		return err
	}
	for i := range targets {
		targets[i].due = due[targets[i].name]
	}
	if o.DryRun {
		for _, t := range targets {
			if len(t.due) == 0 {
				fmt.Fprintf(o.Out, "%s: nothing expires within %s\n", t.name, o.Within)
				continue
			}
			fmt.Fprintf(o.Out, "%s: would renew (expiring: %s): lock %s, back up %s to %s, %s, restart %s one at a time, verify\n",
				t.name, names(t.due), LockFile, KubernetesDir, BackupDir, strings.Join(o.kubeadmCmds(), "; "), strings.Join(components, ", "))
		}
		return nil
	}

	var renewed *target
	for i := range targets {
		t := &targets[i]
		if len(t.due) == 0 {
			fmt.Fprintf(o.Out, "%s: nothing expires within %s\n", t.name, o.Within)
			continue
		}
		if err := o.renewNode(ctx, t); err != nil {
			var rest []string
			for _, u := range targets[i+1:] {
				rest = append(rest, u.name)
			}
			if len(rest) > 0 {
				return fmt.Errorf("%w; stopped: %s not touched", err, strings.Join(rest, ", "))
			}
			return err
		}
		if renewed == nil {
			renewed = t
		}
	}
	if renewed != nil && o.KubeconfigOut != "" && o.Local == nil {
		st := o.Status.Start("Kubeconfig " + o.KubeconfigOut + " from " + renewed.name + "'s renewed admin.conf")
		err := o.writeKubeconfig(ctx, renewed.n)
		st.End(err)
		if err != nil {
			return err
		}
	}
	fmt.Fprintln(o.Out, "certificates renewed")
	return nil
}

func (o Options) wanted(name string) bool {
	if !slices.Contains(Renewable, name) {
		return false
	}
	return len(o.Certs) == 0 || slices.Contains(o.Certs, name)
}

func (o Options) kubeadmCmds() []string {
	if len(o.Certs) == 0 {
		return []string{"kubeadm certs renew all"}
	}
	var out []string
	for _, c := range o.Certs {
		out = append(out, "kubeadm certs renew "+c)
	}
	return out
}

func names(cs []pki.CertStatus) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	sort.Strings(out)
	return strings.Join(slices.Compact(out), ", ")
}

// audit runs pki.Check on the nodes (all when nil) with a window.
func (o Options) audit(ctx context.Context, only []inventory.Node, within time.Duration) (*pki.Result, error) {
	w := within
	if w <= 0 {
		w = -1
	}
	po := pki.Options{WarnWithin: w, FailWithin: -1, Now: o.Now}
	if o.Local != nil {
		po.Local = &pki.LocalSource{PKIDir: KubernetesDir + "/pki", KubeconfigDir: KubernetesDir, ManifestsDir: ManifestsDir, Node: o.Local}
	} else {
		po.Inventory, po.Nodes, po.Connector = o.Inventory, o.Nodes, o.Connector
		if only != nil {
			po.Nodes = only
		}
	}
	res, err := pki.Check(ctx, po)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return res, nil
}

func (o Options) targets(ctx context.Context, res *pki.Result) ([]target, error) {
	if o.Local != nil {
		return []target{{name: res.Nodes[0], n: o.Local}}, nil
	}
	var out []target
	for _, in := range o.Nodes {
		n, err := o.Connector.Connect(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", in.Name, err)
		}
		if !n.Privileged() {
			n = node.Sudo(n)
		}
		out = append(out, target{name: in.Name, in: in, n: n})
	}
	return out, nil
}

// renewNode renews one control plane under its lock; on failure it restores
// the backup and says so in the error.
func (o Options) renewNode(ctx context.Context, t *target) (err error) {
	st := o.Status.Start(t.name + ": lock")
	l, err := o.lock(ctx, t)
	st.End(err)
	if err != nil {
		return fmt.Errorf("node %s: %w", t.name, err)
	}
	defer l.release()

	var only []inventory.Node
	if o.Local == nil {
		only = []inventory.Node{t.in}
	}
	pre, err := o.audit(ctx, only, -1)
	if err != nil {
		return fmt.Errorf("node %s: %w", t.name, err)
	}
	st = o.Status.Start(t.name + ": backup of " + KubernetesDir)
	backup, err := o.backup(ctx, t.n)
	st.End(err)
	if err != nil {
		return fmt.Errorf("node %s: backup: %w (nothing changed)", t.name, err)
	}
	fmt.Fprintf(o.Out, "%s: backup %s\n", t.name, backup)

	if err := o.change(ctx, t, pre); err != nil {
		st := o.Status.Start(t.name + ": restoring " + backup)
		rerr := o.restore(ctx, t, backup)
		st.End(rerr)
		if rerr != nil {
			return fmt.Errorf("node %s: %w; restoring the backup %s failed too: %w", t.name, err, backup, rerr)
		}
		return fmt.Errorf("node %s: %w; backup %s restored, the node serves again", t.name, err, backup)
	}
	return nil
}

// change renews, restarts and verifies.
func (o Options) change(ctx context.Context, t *target, pre *pki.Result) error {
	for _, c := range o.kubeadmCmds() {
		st := o.Status.Start(t.name + ": " + c)
		_, err := t.n.Run(ctx, c)
		st.End(err)
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	if err := o.restartAll(ctx, t); err != nil {
		return err
	}
	st := o.Status.Start(t.name + ": verifying the served certificates and the audit")
	err := o.verify(ctx, t, pre)
	st.End(err)
	return err
}

// restartAll drains the node's API server from the load balancer, restarts
// the static pods one at a time and undrains it.
func (o Options) restartAll(ctx context.Context, t *target) (err error) {
	st := o.Status.Start(t.name + ": draining the API server (new connections refused)")
	drained, err := o.drain(ctx, t.n)
	st.End(err)
	if err != nil {
		return err
	}
	if drained {
		defer func() {
			st := o.Status.Start(t.name + ": undraining the API server")
			uerr := o.undrain(ctx, t.n)
			st.End(uerr)
			if err == nil {
				err = uerr
			}
		}()
	}
	for _, c := range components {
		st := o.Status.Start(t.name + ": restarting " + c)
		err := o.restart(ctx, t, c)
		st.End(err)
		if err != nil {
			return fmt.Errorf("restarting %s: %w", c, err)
		}
	}
	return nil
}

// verify checks that the node serves the certificates on disk, later than
// before where renewed, and that the audit finds no new failure.
func (o Options) verify(ctx context.Context, t *target, pre *pki.Result) error {
	var only []inventory.Node
	if o.Local == nil {
		only = []inventory.Node{t.in}
	}
	post, err := o.audit(ctx, only, -1)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range post.Certificates {
		if !o.wanted(c.Name) {
			continue
		}
		for _, b := range pre.Certificates {
			if b.Name == c.Name && !c.NotAfter.After(b.NotAfter) {
				errs = append(errs, fmt.Errorf("%s: NotAfter %s, not later than before", c.Name, c.NotAfter.Format(time.RFC3339)))
			}
		}
	}
	old := map[string]bool{}
	for _, f := range pre.Findings.Findings {
		if f.Severity == report.Fail {
			old[f.Check+" "+f.File] = true
		}
	}
	for _, f := range post.Findings.Findings {
		if f.Severity == report.Fail && !old[f.Check+" "+f.File] {
			errs = append(errs, fmt.Errorf("audit: %s %s: %s", f.Check, f.File, f.Message))
		}
	}
	for _, s := range []struct{ file, addr string }{
		{"apiserver.crt", "127.0.0.1:6443"},
		{"etcd/server.crt", "127.0.0.1:2379"},
	} {
		if err := servesFile(ctx, t.n, KubernetesDir+"/pki/"+s.file, s.addr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}
