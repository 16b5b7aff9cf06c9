package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/pki"
	"github.com/kbootstrap/kbootstrap/progress"
)

// NodeDir is where an upgrade keeps its files on a node: the staged
// binaries (<version>/) and the copy of what ran before
// (before-<version>/), the way back.
const NodeDir = "/var/lib/kbootstrap/upgrade"

// ErrRefused is a preflight refusal: nothing on any node was changed.
var ErrRefused = errors.New("upgrade refused before any change")

// ErrInterrupted: the run stopped between two nodes; every node is either
// upgraded or untouched, and a new run finishes the job.
var ErrInterrupted = errors.New("upgrade interrupted")

// Options of Run.
type Options struct {
	Inventory *inventory.Inventory
	// Nodes limits the upgrade to these control planes and workers (nil:
	// all of them). Preflight still reads every node.
	Nodes     []inventory.Node
	Connector node.Connector
	Status    *progress.Status
	// Plan receives the plan of a dry run.
	Plan io.Writer
	// To is the target version (default: the inventory's
	// kubernetesVersion).
	To string
	// Binaries is a local directory holding the target's kubeadm, kubelet
	// and kubectl; Images one of image tarballs imported on every node.
	Binaries, Images string
	// PackageRepository is the base of the per-minor Kubernetes apt
	// repositories (<base>/v1.34/deb/) the packages come from without
	// Binaries (default: the base each node's repository already has,
	// pkgs.k8s.io's https://pkgs.k8s.io/core:/stable: as prepare-node sets it
	// up).
	PackageRepository string
	// MaxUnavailable workers are upgraded at once (default 1).
	MaxUnavailable int
	DryRun         bool
	// WorkDir receives the etcd snapshot taken before the first change
	// (default ./<cluster>.upgrade).
	WorkDir string
	// Keep is how many of kubeadm's backups of each kind stay in
	// /etc/kubernetes/tmp (default 3).
	Keep int
	// Timeout bounds each wait (default 5 min); DrainTimeout a node's
	// drain (default 5 min).
	Timeout, DrainTimeout time.Duration
	Now                   func() time.Time
}

// Result says what an upgrade did.
type Result struct {
	To       string       `json:"to"`
	Endpoint string       `json:"endpoint"`
	Snapshot string       `json:"snapshot,omitempty"`
	Nodes    []NodeResult `json:"nodes"`
	// Changed is false when every node already ran the target.
	Changed bool    `json:"changed"`
	Seconds float64 `json:"seconds"`
	DryRun  bool    `json:"dryRun,omitempty"`
}

// NodeResult is one node's part.
type NodeResult struct {
	Node string `json:"node"`
	Role string `json:"role"`
	// Before and After are the node's kubelet version (and control
	// plane's, for control planes) before and after the run.
	Before string `json:"before"`
	After  string `json:"after,omitempty"`
	// Action: "apply" (kubeadm upgrade apply), "node" (kubeadm upgrade
	// node), "none" (already at the target), "rolled back", or "planned"
	// (dry run).
	Action string `json:"action"`
	Steps  []Step `json:"steps,omitempty"`
	// KubeadmSeconds is the time spent inside kubeadm upgrade apply|node
	// (part of the step kubeadm), for the overhead kbootstrap adds.
	KubeadmSeconds float64 `json:"kubeadmSeconds,omitempty"`
	Seconds        float64 `json:"seconds,omitempty"`
}

// Step is one step of a node's upgrade and how long it took.
type Step struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// target is one node of the run, with what was read from it.
type target struct {
	in inventory.Node
	n  node.Node // as root
	cp bool
	// controlPlane is the lowest version of the node's kube-apiserver,
	// kube-controller-manager and kube-scheduler manifests (control planes).
	controlPlane *version.Version
	kubelet      *version.Version
	obj          *corev1.Node
	res          *NodeResult
	// pkg is the node's Kubernetes repository and packages (the online
	// path, without Options.Binaries).
	pkg *packages
}

func (t *target) done(to *version.Version) bool {
	return t.kubelet.EqualTo(to) && (!t.cp || t.controlPlane.EqualTo(to))
}

type run struct {
	o       Options
	to      *version.Version
	cs      kubernetes.Interface
	targets []*target // control planes first, in inventory order, then workers
	// clusterVersion is the kubeadm-config's kubernetesVersion: once it is
	// the target, `kubeadm upgrade apply` has run.
	clusterVersion string
	res            *Result
}

// Run upgrades the cluster of o.Inventory.
func Run(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Minute
	}
	if o.MaxUnavailable <= 0 {
		o.MaxUnavailable = 1
	}
	if o.Keep <= 0 {
		o.Keep = 3
	}
	if o.WorkDir == "" {
		o.WorkDir = "./" + o.Inventory.Name + ".upgrade"
	}
	to := o.To
	if to == "" {
		to = o.Inventory.KubernetesVersion
	}
	if to == "" {
		return nil, errors.New("upgrade: no target version: give --to or the inventory's kubernetesVersion")
	}
	tv, err := parseVersion(to)
	if err != nil {
		return nil, fmt.Errorf("upgrade: --to: %w", err)
	}
	r := &run{o: o, to: tv, res: &Result{To: to, Endpoint: o.Inventory.Endpoint(), DryRun: o.DryRun}}
	defer func() { r.res.Seconds = time.Since(start).Seconds() }()
	if err := r.facts(ctx); err != nil {
		return nil, err
	}
	todo, err := r.preflight(ctx)
	if err != nil {
		return nil, err
	}
	if len(todo) == 0 {
		// Nothing to upgrade; a node an interrupted run left cordoned is
		// uncordoned.
		for _, t := range r.targets {
			if err := r.uncordonLeft(ctx, t); err != nil {
				return r.res, err
			}
		}
		r.o.Status.Printf("every selected node runs %s: nothing to do", to)
		return r.res, nil
	}
	if o.Binaries == "" {
		if why := r.packageFacts(ctx, todo); len(why) > 0 {
			return nil, fmt.Errorf("%w: kubeadm, kubelet and kubectl %s from the Kubernetes apt repository:\n  %s", ErrRefused, to, strings.Join(why, "\n  "))
		}
	}
	if o.DryRun {
		r.plan(todo)
		return r.res, nil
	}
	// Staged and checked on every node before any change.
	if err := r.stage(ctx, todo); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if r.clusterVersion != to {
		if err := r.kubeadmPlan(ctx, todo[0]); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
	}
	if err := r.snapshot(ctx); err != nil {
		return nil, fmt.Errorf("%w: the etcd snapshot before the upgrade: %w", ErrRefused, err)
	}
	r.res.Changed = true
	return r.res, r.apply(ctx, todo)
}

// facts connects to every control plane and worker of the inventory and
// reads what runs there: the manifests' versions from the nodes, the
// kubelets' from their Node objects, the cluster's from kubeadm-config.
func (r *run) facts(ctx context.Context) error {
	inv := r.o.Inventory
	cps := inv.ByRole(inventory.RoleControlPlane)
	if len(cps) == 0 {
		return errors.New("upgrade: the inventory has no control-plane node")
	}
	var errs []error
	for _, in := range append(cps, inv.ByRole(inventory.RoleWorker)...) {
		n, err := r.o.Connector.Connect(ctx, in)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", in.Name, err))
			continue
		}
		t := &target{in: in, n: node.Sudo(n), cp: in.Role == inventory.RoleControlPlane}
		t.res = &NodeResult{Node: in.Name, Role: string(in.Role)}
		if t.cp {
			if t.controlPlane, err = manifestVersion(ctx, t.n); err != nil {
				errs = append(errs, fmt.Errorf("node %s: %w", in.Name, err))
			}
		}
		r.targets = append(r.targets, t)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrRefused, errors.Join(errs...))
	}
	cs, err := kubeadm.AdminClient(ctx, r.targets[0].n, "https://"+r.res.Endpoint)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	r.cs = cs
	return r.readNodes(ctx)
}

// readNodes reads every target's Node object and kubelet version.
func (r *run) readNodes(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var errs []error
	for _, t := range r.targets {
		obj, err := r.cs.CoreV1().Nodes().Get(cctx, t.in.Name, metav1.GetOptions{})
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: its Node: %w", t.in.Name, err))
			continue
		}
		t.obj = obj
		if t.kubelet, err = parseVersion(obj.Status.NodeInfo.KubeletVersion); err != nil {
			errs = append(errs, fmt.Errorf("node %s: its kubelet's version: %w", t.in.Name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrRefused, errors.Join(errs...))
	}
	cm, err := r.cs.CoreV1().ConfigMaps("kube-system").Get(cctx, "kubeadm-config", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%w: kube-system/kubeadm-config: %w", ErrRefused, err)
	}
	var cc struct {
		KubernetesVersion string `json:"kubernetesVersion"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &cc); err != nil {
		return fmt.Errorf("%w: kube-system/kubeadm-config: ClusterConfiguration: %w", ErrRefused, err)
	}
	r.clusterVersion = cc.KubernetesVersion
	return nil
}

// imageTag is the version tag of a control-plane manifest's image.
var imageTag = regexp.MustCompile(`(?m)^\s*image:\s*\S+:(v[0-9]+\.[0-9]+\.[0-9]+)\s*$`)

// manifestVersion is the lowest version among the node's kube-apiserver,
// kube-controller-manager and kube-scheduler manifests.
func manifestVersion(ctx context.Context, n node.Node) (*version.Version, error) {
	var low *version.Version
	for _, c := range []string{kubeadm.APIServer, kubeadm.ControllerManager, kubeadm.Scheduler} {
		v, err := componentVersion(ctx, n, c)
		if err != nil {
			return nil, err
		}
		if low == nil || v.LessThan(low) {
			low = v
		}
	}
	return low, nil
}

func componentVersion(ctx context.Context, n node.Node, c string) (*version.Version, error) {
	raw, err := n.ReadFile(ctx, kubeadm.Manifest(c))
	if err != nil {
		return nil, err
	}
	m := imageTag.FindSubmatch(raw)
	if m == nil {
		return nil, fmt.Errorf("%s: field image: no version tag", kubeadm.Manifest(c))
	}
	return parseVersion(string(m[1]))
}

// selected reports whether t is among o.Nodes (or o.Nodes is nil).
func (r *run) selected(t *target) bool {
	if r.o.Nodes == nil {
		return true
	}
	for _, n := range r.o.Nodes {
		if n.Name == t.in.Name {
			return true
		}
	}
	return false
}

// certWindow: a certificate expiring within it blocks the upgrade.
const certWindow = 24 * time.Hour

// preflight checks everything that must hold before any change and returns
// the nodes to upgrade, control planes first; a refusal names every node
// and what blocks it.
func (r *run) preflight(ctx context.Context) ([]*target, error) {
	var why []string
	apiServers, kubelets := map[string]*version.Version{}, map[string]*version.Version{}
	for _, t := range r.targets {
		kubelets[t.in.Name] = t.kubelet
		if t.cp {
			apiServers[t.in.Name] = t.controlPlane
		}
		if t.cp {
			t.res.Before = "v" + t.controlPlane.String()
		} else {
			t.res.Before = "v" + t.kubelet.String()
		}
		if t.obj == nil || !kubeadm.NodeReady(t.obj) {
			why = append(why, fmt.Sprintf("%s: its Node is not Ready", t.in.Name))
		}
	}
	why = append(why, skew(r.to, apiServers, kubelets)...)
	var todo []*target
	cpsLeft := false
	for _, t := range r.targets {
		if t.done(r.to) {
			t.res.Action = "none"
			t.res.After = "v" + r.to.String()
			continue
		}
		if t.cp {
			cpsLeft = true
		}
		if !r.selected(t) {
			continue
		}
		if !t.cp && cpsLeft && !r.allControlPlanesSelected() {
			why = append(why, fmt.Sprintf("%s: a worker is upgraded after every control plane runs %s (its kubelet would be newer than an API server)", t.in.Name, r.to))
		}
		todo = append(todo, t)
	}
	for _, t := range r.targets {
		r.res.Nodes = append(r.res.Nodes, *t.res)
	}
	if len(why) == 0 && len(todo) > 0 {
		why = append(why, r.etcdHealthy(ctx)...)
		why = append(why, r.certificates(ctx)...)
	}
	if len(why) > 0 {
		return nil, fmt.Errorf("%w:\n  %s", ErrRefused, strings.Join(why, "\n  "))
	}
	return todo, nil
}

func (r *run) allControlPlanesSelected() bool {
	for _, t := range r.targets {
		if t.cp && !t.done(r.to) && !r.selected(t) {
			return false
		}
	}
	return true
}

// etcdHealthy: every member started, a voter, answering without alarms.
func (r *run) etcdHealthy(ctx context.Context) []string {
	cp := r.targets[0]
	cli, err := etcd.ConnectAsAPIServer(ctx, cp.n, etcd.ClientOptions{Timeout: 30 * time.Second})
	if err != nil {
		return []string{fmt.Sprintf("%s: etcd as its API server reaches it: %v", cp.in.Name, err)}
	}
	defer cli.Close()
	if err := cli.Health(ctx); err != nil {
		return []string{fmt.Sprintf("etcd: %v", err)}
	}
	return nil
}

// certificates: none expires within certWindow (renew them first: `certs
// renew`), on any control plane.
func (r *run) certificates(ctx context.Context) []string {
	var cps []inventory.Node
	for _, t := range r.targets {
		if t.cp {
			cps = append(cps, t.in)
		}
	}
	res, err := pki.Check(ctx, pki.Options{Inventory: r.o.Inventory, Nodes: cps, Connector: r.o.Connector, Now: r.o.Now})
	if err != nil {
		return []string{fmt.Sprintf("certificates: %v", err)}
	}
	var why []string
	limit := r.o.Now().Add(certWindow)
	for _, c := range res.Certificates {
		if !c.ExternallyManaged && c.NotAfter.Before(limit) {
			why = append(why, fmt.Sprintf("%s: %s expires %s, within %s: run certs renew first", c.Node, c.File, c.NotAfter.UTC().Format(time.RFC3339), certWindow))
		}
	}
	return why
}

// plan prints what a run would do, node by node.
func (r *run) plan(todo []*target) {
	w := r.o.Plan
	if w == nil {
		w = io.Discard
	}
	fmt.Fprintf(w, "upgrade to %s (dry run: nothing changed)\n", r.res.To)
	from := "of " + r.o.Binaries
	if r.o.Binaries == "" {
		var uris []string
		for _, t := range todo {
			if !slices.Contains(uris, t.pkg.uri) {
				uris = append(uris, t.pkg.uri)
			}
		}
		from = "from " + strings.Join(uris, ", ") + " (and the running packages, the way back)"
	}
	fmt.Fprintf(w, "before any change: stage kubeadm, kubelet, kubectl %s%s on %d nodes; kubeadm upgrade plan; an etcd snapshot into %s\n",
		from, map[bool]string{true: " and the images of " + r.o.Images, false: ""}[r.o.Images != ""], len(todo), r.o.WorkDir)
	apply := r.clusterVersion != r.res.To
	batch := 0
	for _, t := range todo {
		switch {
		case t.cp && apply:
			fmt.Fprintf(w, "%s (control plane, %s): drain; API server out of the load balancer; etcd leadership off it; kubeadm upgrade apply %s; back in; kubelet and kubectl %s; uncordon\n", t.in.Name, t.res.Before, r.res.To, r.res.To)
			apply = false
		case t.cp:
			fmt.Fprintf(w, "%s (control plane, %s): drain; API server out of the load balancer; etcd leadership off it; kubeadm upgrade node; back in; kubelet and kubectl %s; uncordon\n", t.in.Name, t.res.Before, r.res.To)
		default:
			batch++
			fmt.Fprintf(w, "%s (worker, %s, batch %d): drain (PodDisruptionBudgets honoured); kubeadm upgrade node; kubelet and kubectl %s; uncordon\n", t.in.Name, t.res.Before, (batch-1)/r.o.MaxUnavailable+1, r.res.To)
		}
		for i := range r.res.Nodes {
			if r.res.Nodes[i].Node == t.in.Name {
				r.res.Nodes[i].Action = "planned"
			}
		}
	}
	for _, t := range r.targets {
		if t.done(r.to) {
			fmt.Fprintf(w, "%s: already at %s\n", t.in.Name, r.res.To)
		}
	}
}

// snapshot saves a verified etcd snapshot on this machine (0600) through
// the first control plane's own member, as its API server reaches it.
func (r *run) snapshot(ctx context.Context) error {
	if err := os.MkdirAll(r.o.WorkDir, 0o700); err != nil {
		return err
	}
	cp := r.targets[0]
	file := filepath.Join(r.o.WorkDir, fmt.Sprintf("etcd-before-%s-%s.db", r.res.To, r.o.Now().UTC().Format("20060102T150405Z")))
	return r.o.Status.Do("etcd snapshot "+file+" (through "+cp.in.Name+")", func() error {
		cli, err := etcd.ConnectAsAPIServer(ctx, cp.n, etcd.ClientOptions{Timeout: 30 * time.Second, Endpoints: []string{kubeadm.LocalEtcd}})
		if err != nil {
			return err
		}
		defer cli.Close()
		if _, err := cli.SaveSnapshot(ctx, file, etcd.SnapshotOptions{}); err != nil {
			return err
		}
		r.res.Snapshot = file
		return nil
	})
}

func (r *run) wait(ctx context.Context, what string, f func(context.Context) error) error {
	return poll.Until(ctx, r.o.Timeout, time.Second, what, f)
}
