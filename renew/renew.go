package renew

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/progress"

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

// users are the static pods that read each renewable file; admin.conf and
// super-admin.conf are read by people, not pods.
var users = map[string][]string{
	"apiserver": {"kube-apiserver"}, "apiserver-etcd-client": {"kube-apiserver"},
	"apiserver-kubelet-client": {"kube-apiserver"}, "front-proxy-client": {"kube-apiserver"},
	"etcd-server": {"etcd"}, "etcd-peer": {"etcd"}, "etcd-healthcheck-client": {"etcd"},
	"controller-manager.conf": {"kube-controller-manager"}, "scheduler.conf": {"kube-scheduler"},
}

// restarted are the components to restart after renewing certs (all when
// none are named), in restart order.
func restarted(certs []string) []string {
	if len(certs) == 0 {
		return components
	}
	var out []string
	for _, c := range components {
		for _, name := range certs {
			if slices.Contains(users[name], c) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

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
	// Textfile, when set, receives the run's time, duration and result in
	// the Prometheus text format (node_exporter's textfile collector),
	// written atomically where kbootstrap runs; the time of the last
	// successful run is carried over from the previous file.
	Textfile string
	// Keep is how many backups stay on a node; 0 means 5.
	Keep int
	// DrainWait is how long a load balancer takes to see a drained API
	// server down (haproxy: inter 2s × fall 3); 0 means 8s.
	DrainWait time.Duration
	// StaleAfter: a lock whose heartbeat is older is taken over; 0 means 2m.
	StaleAfter time.Duration
	// Timeout bounds each wait for a pod to stop, start and be healthy; 0
	// means 6m: a static pod keeps its UID when its manifest comes back, and
	// with it the kubelet's crash back-off (up to 5m), which the controller-
	// manager and scheduler build up while their API server restarts.
	Timeout time.Duration

	Out    io.Writer
	Status *progress.Status
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
		o.Timeout = 6 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// errSkipped: the node was renewed by another run meanwhile.
var errSkipped = errors.New("renewed meanwhile")

// ErrLocked is returned when another live renewal holds a node's lock.
var ErrLocked = errors.New("locked by another renewal")

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
	start := o.Now()
	var renewedNodes []string
	err := o.run(ctx, &renewedNodes)
	if o.Textfile != "" {
		if werr := o.writeTextfile(ctx, start, renewedNodes, err); werr != nil {
			err = errors.Join(err, fmt.Errorf("--textfile %s: %w", o.Textfile, werr))
		}
	}
	return err
}

func (o Options) run(ctx context.Context, renewedNodes *[]string) error {
	for _, c := range o.Certs {
		if !slices.Contains(Renewable, c) {
			if c == "kubelet.conf" {
				return errors.New("--certs kubelet.conf: the kubelet rotates its own credentials; kubeadm does not renew it")
			}
			return fmt.Errorf("--certs %s: not one of %s", c, strings.Join(Renewable, ", "))
		}
	}
	if o.Local != nil && !o.Local.Privileged() {
		return errors.New("--local works on /etc/kubernetes and the static pods as root: run it as root (sudo kbootstrap certs renew --local)")
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
		msg, ok, err := kubeletRotation(ctx, targets[i].n)
		switch {
		case err != nil:
			fmt.Fprintf(o.Out, "%s: warning: kubelet.conf: cannot tell whether the kubelet rotates its certificate: %v\n", targets[i].name, err)
		case !ok:
			fmt.Fprintf(o.Out, "%s: warning: kubelet.conf: %s\n", targets[i].name, msg)
		default:
			fmt.Fprintf(o.Out, "%s: kubelet.conf: %s\n", targets[i].name, msg)
		}
	}
	if o.DryRun {
		for _, t := range targets {
			if len(t.due) == 0 {
				fmt.Fprintf(o.Out, "%s: nothing expires within %s\n", t.name, o.Within)
				continue
			}
			fmt.Fprintf(o.Out, "%s: would renew (expiring: %s): lock %s, back up %s to %s, %s, %s, verify\n",
				t.name, names(t.due), LockFile, KubernetesDir, BackupDir, strings.Join(o.kubeadmCmds(), "; "), restartPlan(restarted(o.Certs)))
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
		err := o.renewNode(ctx, t)
		if errors.Is(err, errSkipped) {
			continue
		}
		if err != nil {
			var rest []string
			for _, u := range targets[i+1:] {
				rest = append(rest, u.name)
			}
			if len(rest) > 0 {
				return fmt.Errorf("%w; stopped: %s not touched", err, strings.Join(rest, ", "))
			}
			return err
		}
		*renewedNodes = append(*renewedNodes, t.name)
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

func restartPlan(cs []string) string {
	if len(cs) == 0 {
		return "restart no static pod (no pod reads them)"
	}
	return "restart " + strings.Join(cs, ", ") + " one at a time"
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
	// Judged again under the lock: another run may have renewed the node
	// between our audit and the lock.
	limit := o.Now().Add(o.Within)
	due := false
	for _, c := range pre.Certificates {
		if !c.ExternallyManaged && o.wanted(c.Name) && c.NotAfter.Before(limit) {
			due = true
		}
	}
	if !due {
		fmt.Fprintf(o.Out, "%s: renewed meanwhile by another run: nothing expires within %s now\n", t.name, o.Within)
		return errSkipped
	}
	st = o.Status.Start(t.name + ": every etcd member healthy")
	err = o.poll(ctx, "every etcd member healthy", func(ctx context.Context) error { return clusterHealthy(ctx, t.n) })
	st.End(err)
	if err != nil {
		return fmt.Errorf("node %s: %w (nothing changed: a renewal restarts this node's etcd member, which needs the others)", t.name, err)
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
	if err := o.restartAll(ctx, t, restarted(o.Certs)); err != nil {
		return err
	}
	st := o.Status.Start(t.name + ": verifying the served certificates and the audit")
	err := o.verify(ctx, t, pre)
	st.End(err)
	return err
}

// restartAll drains the node's API server from the load balancer, restarts
// its static pods one at a time, gates on the health of all of them and
// undrains it.
func (o Options) restartAll(ctx context.Context, t *target, want []string) (err error) {
	all, err := o.present(ctx, t.n)
	if err != nil {
		return err
	}
	var cs []string
	for _, c := range all {
		if slices.Contains(want, c) {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil
	}
	drained := false
	if slices.Contains(cs, "kube-apiserver") {
		st := o.Status.Start(t.name + ": draining the API server (new connections refused)")
		drained, err = o.drain(ctx, t.n)
		st.End(err)
		if err != nil {
			return err
		}
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
	for _, c := range cs {
		st := o.Status.Start(t.name + ": restarting " + c)
		err := o.restart(ctx, t, c)
		st.End(err)
		if err != nil {
			return fmt.Errorf("restarting %s: %w", c, err)
		}
	}
	st := o.Status.Start(t.name + ": " + strings.Join(all, ", ") + " healthy")
	err = o.healthAll(ctx, t, healthOrder(all), slices.Contains(cs, "kube-apiserver"))
	st.End(err)
	return err
}

// present are the components whose static pod manifest is on the node, in
// restart order (no etcd with an external etcd).
func (o Options) present(ctx context.Context, n node.Node) ([]string, error) {
	var out []string
	for _, c := range components {
		_, err := n.Stat(ctx, ManifestsDir+"/"+c+".yaml")
		if errors.Is(err, fs.ErrNotExist) {
			// Left aside by a run that died before moving it back.
			if _, aerr := n.Stat(ctx, asideDir+"/"+c+".yaml"); aerr == nil {
				if _, err := n.Run(ctx, fmt.Sprintf("mv %s/%s.yaml %s/", asideDir, c, ManifestsDir)); err != nil {
					return nil, err
				}
				fmt.Fprintf(o.Out, "%s: %s.yaml was left in %s by an earlier run: moved back\n", n.Name(), c, asideDir)
				err = nil
			} else {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if !slices.Contains(out, "kube-apiserver") {
		return nil, fmt.Errorf("no %s/kube-apiserver.yaml: not a control plane", ManifestsDir)
	}
	return out, nil
}

// healthOrder puts etcd first: the API server's readiness depends on it.
func healthOrder(cs []string) []string {
	out := slices.Clone(cs)
	slices.SortStableFunc(out, func(a, b string) int {
		switch {
		case a == "etcd" && b != "etcd":
			return -1
		case b == "etcd" && a != "etcd":
			return 1
		}
		return 0
	})
	return out
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
