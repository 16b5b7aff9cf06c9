package renew

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/pki"
	"github.com/kbootstrap/kbootstrap/progress"
)

// Where the renewal keeps its own files on a node.
const (
	StateDir  = "/var/lib/kbootstrap"
	BackupDir = StateDir + "/certs-backup"
	LockFile  = StateDir + "/certs-renew.lock"
)

// Renewable are the names `kubeadm certs renew` takes, as pki names them.
// kubelet.conf is not one: the kubelet rotates its own credentials.
var Renewable = []string{
	"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
	"apiserver", "apiserver-etcd-client", "apiserver-kubelet-client", "front-proxy-client",
	"etcd-healthcheck-client", "etcd-peer", "etcd-server",
}

// components are the static pods restarted, in order, the node drained from
// the load balancer throughout: the controller-manager and scheduler first,
// while their API server is up (restarted later, during an API server
// restart, they would crash and wait out the kubelet's back-off); then
// etcd; then the API server, which so connects once, with its renewed
// client certificate, to the renewed etcd.
var components = []string{"kube-controller-manager", "kube-scheduler", "etcd", "kube-apiserver"}

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
	// DrainWait: see apidrain.Options (0: its defaults).
	DrainWait time.Duration
	// StaleAfter: a lock whose heartbeat is older is taken over; 0 means 2m.
	StaleAfter time.Duration
	// lockFile is the node's lock ("" means LockFile; tests use their own).
	lockFile string
	// Timeout bounds each wait for a component's new container to run and
	// be healthy; 0 means 6m: a component that crashed shortly before (the
	// controller-manager or scheduler while their API server restarted)
	// waits out the kubelet's crash back-off, up to 5m.
	Timeout time.Duration

	// Status receives every line of progress (nil: none).
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
	if o.StaleAfter == 0 {
		o.StaleAfter = 2 * time.Minute
	}
	if o.Timeout == 0 {
		o.Timeout = 6 * time.Minute
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
		if werr := o.writeTextfile(start, renewedNodes, err); werr != nil {
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
		o.Status.Printf("%s", msg)
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
			o.Status.Printf("%s: warning: kubelet.conf: cannot tell whether the kubelet rotates its certificate: %v", targets[i].name, err)
		case !ok:
			o.Status.Printf("%s: warning: kubelet.conf: %s", targets[i].name, msg)
		default:
			o.Status.Printf("%s: kubelet.conf: %s", targets[i].name, msg)
		}
	}
	if o.DryRun {
		for _, t := range targets {
			if len(t.due) == 0 {
				o.Status.Printf("%s: nothing expires within %s", t.name, o.Within)
				continue
			}
			o.Status.Printf("%s: would renew (expiring: %s): lock %s, back up %s to %s, %s, %s, verify",
				t.name, names(t.due), o.lockPath(), kubeadm.KubernetesDir, BackupDir, strings.Join(o.kubeadmCmds(), "; "), restartPlan(restarted(o.Certs)))
		}
		return nil
	}

	var renewed *target
	for i := range targets {
		t := &targets[i]
		if len(t.due) == 0 {
			o.Status.Printf("%s: nothing expires within %s", t.name, o.Within)
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
	o.Status.Printf("certificates renewed")
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
		po.Local = &pki.LocalSource{PKIDir: kubeadm.PKIDir, KubeconfigDir: kubeadm.KubernetesDir, ManifestsDir: kubeadm.ManifestsDir, KubeletPKIDir: kubeadm.KubeletPKIDir, Node: o.Local}
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

// writeKubeconfig writes the node's admin.conf, pointed at the endpoint, to
// o.KubeconfigOut (0600).
func (o Options) writeKubeconfig(ctx context.Context, n node.Node) error {
	_, err := kubeadm.WriteAdminKubeconfig(ctx, n, o.Inventory.Endpoint(), o.KubeconfigOut)
	return err
}
