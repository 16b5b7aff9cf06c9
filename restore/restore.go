// Package restore brings a kubeadm cluster with stacked etcd back from a
// backup bundle, or from one surviving member's data, following the
// Kubernetes docs' procedure: every API server stopped, then every etcd;
// the same snapshot restored on every member (its own name and peer URL,
// the full initial cluster, a new cluster token, the revision bumped and
// marked compacted); etcd started and healthy, then the API servers; the
// controller-manager, scheduler and every kubelet restarted; gated on
// /readyz through the control-plane endpoint and every Node Ready.
//
// The restore itself runs on each control plane: this kbootstrap, uploaded
// there the way timers install it (nodetimer), runs etcdutl's restore
// library in-process (`kbootstrap etcd restore-member`). Nothing has to be
// installed on the nodes by hand, and the node needs no etcdutl of the same
// version: kubeadm's etcd image has none.
//
// Nothing is deleted: each member's data is moved aside inside its data
// directory (/var/lib/etcd/member.kbootstrap-before-<time>), the way back. A run that fails
// before any data directory moved puts the manifests back; after that it
// leaves the nodes as they are and says how to finish (run it again) or
// go back.
package restore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kbootstrap/kbootstrap/backup"
	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/nodetimer"
	"github.com/kbootstrap/kbootstrap/progress"
)

// AsideDir is where a restore keeps the static pod manifests of the
// components it stopped (kept apart from renew's, which a renewal moves
// back on its own).
const AsideDir = kubeadm.KubernetesDir + "/kbootstrap-restore"

// NodeDir holds the snapshot uploaded to a control plane (0700).
const NodeDir = "/var/lib/kbootstrap/restore"

// ErrRefused is a preflight refusal: nothing on any node was changed.
var ErrRefused = errors.New("restore refused before any change")

// Options of Run.
type Options struct {
	Inventory *inventory.Inventory
	Connector node.Connector
	Status    *progress.Status
	// Plan receives the plan of a dry run.
	Plan io.Writer
	// Bundle and its Secrets; or FromMember, the control plane whose own
	// etcd data is restored on every member.
	Bundle     string
	Secrets    backup.Secrets
	FromMember string
	DryRun     bool
	// Binary is the kbootstrap that runs the restore on the nodes.
	Binary *nodetimer.Binary
	// WorkDir holds the snapshot on this machine (0700, removed after a
	// restore that completed; kept after a failure, for the run that
	// completes it).
	WorkDir string
	// Timeout bounds each wait (default 5 min).
	Timeout time.Duration
	Now     func() time.Time
}

// Result says what a restore did.
type Result struct {
	Source   string   `json:"source"`
	Revision int64    `json:"revision,omitempty"`
	Token    string   `json:"clusterToken"`
	Members  []Member `json:"members"`
	Endpoint string   `json:"endpoint"`
	Steps    []Step   `json:"steps"`
	Seconds  float64  `json:"seconds"`
	DryRun   bool     `json:"dryRun,omitempty"`
}

// Member is one control plane's member as restored.
type Member struct {
	Node     string   `json:"node"`
	Name     string   `json:"name"`
	PeerURLs []string `json:"peerURLs"`
	DataDir  string   `json:"dataDir"`
	// Aside is where its data directory before the restore was moved.
	Aside string `json:"aside,omitempty"`
}

// Step is one step of the run and how long it took.
type Step struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// cp is a control plane as the run knows it.
type cp struct {
	in       inventory.Node
	n        node.Node
	member   etcd.ManifestMember
	client   etcd.ClientFlags
	ca       []byte
	aside    map[string]bool // components whose manifest is in AsideDir
	restored etcd.RestoreMemberResult
}

type run struct {
	o        Options
	cps      []*cp
	others   []inventory.Node
	snapshot string
	// initialCluster is every member's name=peerURL, in inventory order.
	initialCluster string
	res            *Result
	// moved is set once a member's data may have moved (restore-member
	// started on a node): from then on a failure leaves everything for the
	// next run.
	moved atomic.Bool
	// heartbeats are the Nodes' Ready heartbeats just before the kubelets'
	// restart (the snapshot's, or a last post of the kubelet): the gate
	// wants newer ones, posted from the restored state.
	heartbeats map[string]time.Time
	cs         kubernetes.Interface // client's, once made
}

// Run restores the cluster of o.Inventory.
func Run(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if (o.Bundle == "") == (o.FromMember == "") {
		return nil, errors.New("restore: give a bundle FILE or --from-member NODE, one of them")
	}
	r := &run{o: o, res: &Result{Endpoint: o.Inventory.Endpoint(), DryRun: o.DryRun}}
	if err := os.MkdirAll(o.WorkDir, 0o700); err != nil {
		return nil, err
	}
	r.snapshot = filepath.Join(o.WorkDir, "snapshot.db")
	// The snapshot of a bundle (every Secret of the cluster) is kept only
	// for a restore under way: a refusal or a dry run leaves none (one of
	// --from-member is kept for the run that completes it).
	forget := func() {
		if o.Bundle != "" {
			os.Remove(r.snapshot)
			os.Remove(o.WorkDir) // only when empty
		}
	}
	if err := r.preflight(ctx); err != nil {
		forget()
		return nil, err
	}
	if o.DryRun {
		forget()
		r.plan()
		r.res.Seconds = time.Since(start).Seconds()
		return r.res, nil
	}
	err := r.apply(ctx)
	r.res.Seconds = time.Since(start).Seconds()
	if err != nil {
		return r.res, r.failed(ctx, err)
	}
	os.RemoveAll(o.WorkDir)
	return r.res, nil
}

func (r *run) apply(ctx context.Context) error {
	type stepFn struct {
		name string
		f    func(context.Context) error
	}
	steps := []stepFn{
		{"snapshot", r.takeSnapshot},
		{"stop kube-apiserver", func(ctx context.Context) error { return r.stop(ctx, kubeadm.APIServer) }},
		{"stop etcd", func(ctx context.Context) error { return r.stop(ctx, kubeadm.Etcd) }},
		{"restore etcd", r.restore},
		{"start etcd", r.startEtcd},
		{"start kube-apiserver", r.startAPIServers},
		{"restart controller-manager and scheduler", r.restartControllers},
		{"restart kubelets", r.restartKubelets},
		{"cluster ready", r.gate},
		{"clean up", r.cleanup},
	}
	for _, s := range steps {
		t := time.Now()
		err := s.f(ctx)
		r.res.Steps = append(r.res.Steps, Step{Name: s.name, Seconds: time.Since(t).Seconds()})
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// each runs f on every control plane at once, one progress line each.
func (r *run) each(ctx context.Context, title string, f func(ctx context.Context, c *cp) error) error {
	byName := map[string]*cp{}
	var nodes []inventory.Node
	for _, c := range r.cps {
		byName[c.in.Name] = c
		nodes = append(nodes, c.in)
	}
	_, err := node.Parallel(ctx, nodes, len(nodes), func(ctx context.Context, in inventory.Node) (struct{}, error) {
		return struct{}{}, r.o.Status.Do(in.Name+": "+title, func() error { return f(ctx, byName[in.Name]) })
	})
	return err
}

func (r *run) wait(ctx context.Context, what string, f func(context.Context) error) error {
	return poll.Until(ctx, r.o.Timeout, time.Second, what, f)
}

// preflight gathers every control plane's facts and refuses, before any
// change, a bundle that does not verify, an unreachable control plane, a
// bundle of another cluster (its CA is not the nodes' CA) or a snapshot of
// a newer etcd than the nodes run.
func (r *run) preflight(ctx context.Context) error {
	o := r.o
	var bundleCA []byte
	var snapVersion string
	if o.Bundle != "" {
		var opened *backup.Opened
		err := o.Status.Do("bundle "+o.Bundle+" verified", func() error {
			var err error
			opened, err = backup.Open(o.Bundle, o.Secrets, r.snapshot)
			return err
		})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		bundleCA = opened.PKI["ca.crt"]
		snapVersion = opened.Manifest.EtcdVersion
		r.res.Source = o.Bundle
		r.res.Revision = opened.Manifest.SnapshotRevision
		if opened.Manifest.Cluster != o.Inventory.Name {
			o.Status.Printf("the bundle was taken of cluster %q, the inventory is %q (its CA is the nodes': going on)", opened.Manifest.Cluster, o.Inventory.Name)
		}
	} else {
		r.res.Source = "member " + o.FromMember
	}
	cps := o.Inventory.ByRole(inventory.RoleControlPlane)
	if len(cps) == 0 {
		return fmt.Errorf("%w: no control plane in the inventory", ErrRefused)
	}
	if o.FromMember != "" && !slices.ContainsFunc(cps, func(n inventory.Node) bool { return n.Name == o.FromMember }) {
		return fmt.Errorf("%w: --from-member %s: not a control plane of the inventory", ErrRefused, o.FromMember)
	}
	r.others = o.Inventory.ByRole(inventory.RoleWorker)
	facts, err := node.Parallel(ctx, cps, len(cps), func(ctx context.Context, in inventory.Node) (*cp, error) {
		var c *cp
		err := o.Status.Do(in.Name+": facts", func() error {
			var err error
			c, err = r.facts(ctx, in)
			return err
		})
		return c, err
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	r.cps = facts
	for _, c := range r.cps {
		if c.aside[kubeadm.Etcd] {
			// An earlier run stopped etcd and may have restored some
			// members: never started again half-restored.
			r.moved.Store(true)
		}
	}
	var errs []error
	names := map[string]string{}
	for _, c := range r.cps {
		if other, dup := names[c.member.Name]; dup {
			errs = append(errs, fmt.Errorf("node %s: %s: etcd member name %q is also %s's", c.in.Name, kubeadm.EtcdManifest, c.member.Name, other))
		}
		names[c.member.Name] = c.in.Name
		want := bundleCA
		if want == nil {
			want = r.cps[0].ca
		}
		if !bytes.Equal(bytes.TrimSpace(c.ca), bytes.TrimSpace(want)) {
			what := "the bundle's"
			if bundleCA == nil {
				what = r.cps[0].in.Name + "'s"
			}
			errs = append(errs, fmt.Errorf("node %s: %s is not %s ca.crt: a bundle of another cluster, or a node rebuilt with a new CA", c.in.Name, kubeadm.CACert, what))
		}
		if snapVersion != "" && c.member.Version != "" && etcd.Newer(snapVersion, c.member.Version) {
			errs = append(errs, fmt.Errorf("node %s: the snapshot is of etcd %s, newer than the node's etcd %s (%s)", c.in.Name, snapVersion, c.member.Version, c.member.Image))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	var ic []string
	for _, c := range r.cps {
		for _, u := range c.member.PeerURLs {
			ic = append(ic, c.member.Name+"="+u)
		}
		r.res.Members = append(r.res.Members, Member{Node: c.in.Name, Name: c.member.Name, PeerURLs: c.member.PeerURLs, DataDir: c.member.DataDir})
	}
	r.initialCluster = strings.Join(ic, ",")
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	r.res.Token = "kbootstrap-restore-" + o.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
	return nil
}

// facts reads what the restore needs of one control plane: etcd's and the
// API server's manifests (in place or left aside by an earlier run), its
// CA, and that this kbootstrap can run there.
func (r *run) facts(ctx context.Context, in inventory.Node) (*cp, error) {
	n, err := r.o.Connector.Connect(ctx, in)
	if err != nil {
		return nil, err
	}
	c := &cp{in: in, n: node.Sudo(n), aside: map[string]bool{}}
	read := func(component string) ([]byte, error) {
		b, err := c.n.ReadFile(ctx, kubeadm.Manifest(component))
		if errors.Is(err, fs.ErrNotExist) {
			if b, aerr := c.n.ReadFile(ctx, AsideDir+"/"+component+".yaml"); aerr == nil {
				c.aside[component] = true
				return b, nil
			}
		}
		return b, err
	}
	em, err := read(kubeadm.Etcd)
	if err != nil {
		return nil, fmt.Errorf("etcd's manifest (a stacked etcd member): %w", err)
	}
	if c.member, err = etcd.ParseManifestMember(em); err != nil {
		return nil, fmt.Errorf("%s: %w", kubeadm.EtcdManifest, err)
	}
	am, err := read(kubeadm.APIServer)
	if err != nil {
		return nil, fmt.Errorf("the kube-apiserver's manifest: %w", err)
	}
	argv, _, err := etcd.ManifestCommand(am, kubeadm.APIServer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kubeadm.APIServerManifest, err)
	}
	c.client = etcd.ClientFlagsFromArgs(etcd.ParseAPIServerArgs(argv))
	if err := c.client.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", kubeadm.APIServerManifest, err)
	}
	if c.ca, err = c.n.ReadFile(ctx, kubeadm.CACert); err != nil {
		return nil, err
	}
	f, err := nodetimer.GatherFacts(ctx, c.n)
	if err != nil {
		return nil, err
	}
	if err := r.o.Binary.RunsOn(f); err != nil {
		return nil, err
	}
	for _, comp := range []string{kubeadm.APIServer, kubeadm.Etcd} {
		if c.aside[comp] {
			r.o.Status.Printf("%s: %s.yaml is in %s: an earlier restore stopped it; this run completes that restore", in.Name, comp, AsideDir)
		}
	}
	return c, nil
}

func (r *run) plan() {
	w := r.o.Plan
	fmt.Fprintf(w, "restore %s onto %d control planes (endpoint %s), new cluster token %s\n", r.res.Source, len(r.cps), r.res.Endpoint, r.res.Token)
	if r.o.FromMember != "" {
		fmt.Fprintf(w, "%s: snapshot of its etcd member's own data (as it is now)\n", r.o.FromMember)
	}
	for _, c := range r.cps {
		fmt.Fprintf(w, "%s: stop kube-apiserver, then etcd (manifests to %s)\n", c.in.Name, AsideDir)
		fmt.Fprintf(w, "%s: move %s/member aside to %s/member.kbootstrap-before-<time> (kept); restore the snapshot as member %s (%s), --initial-cluster %s, revision +%d, marked compacted\n",
			c.in.Name, c.member.DataDir, c.member.DataDir, c.member.Name, strings.Join(c.member.PeerURLs, ","), r.initialCluster, etcd.DefaultRevisionBump)
		fmt.Fprintf(w, "%s: start etcd, then kube-apiserver; restart kube-controller-manager, kube-scheduler and the kubelet\n", c.in.Name)
	}
	for _, n := range r.others {
		fmt.Fprintf(w, "%s: restart the kubelet\n", n.Name)
	}
	fmt.Fprintf(w, "then: /readyz through %s and every Node Ready\n", r.res.Endpoint)
}

// takeSnapshot, with --from-member, saves the member's own data as it is
// now, from the member itself (etcd serves a snapshot without quorum). A
// run that already stopped it uses the snapshot the earlier run saved.
func (r *run) takeSnapshot(ctx context.Context) error {
	if r.o.FromMember == "" {
		return nil
	}
	c := r.cps[slices.IndexFunc(r.cps, func(c *cp) bool { return c.in.Name == r.o.FromMember })]
	if c.aside[kubeadm.Etcd] {
		if _, err := os.Stat(r.snapshot); err != nil {
			return fmt.Errorf("node %s: etcd was stopped by an earlier restore and its snapshot %s is gone: %w", c.in.Name, r.snapshot, err)
		}
		r.o.Status.Printf("%s: etcd already stopped: restoring the snapshot the earlier run saved (%s)", c.in.Name, r.snapshot)
		return nil
	}
	return r.o.Status.Do(c.in.Name+": snapshot of its etcd member", func() error {
		ep := kubeadm.LocalEtcd
		cli, err := etcd.Connect(ctx, c.n, c.client, etcd.ClientOptions{Timeout: 30 * time.Second, Endpoints: []string{ep}})
		if err != nil {
			return err
		}
		defer cli.Close()
		snap, err := cli.SaveSnapshot(ctx, r.snapshot, etcd.SnapshotOptions{})
		if err != nil {
			return err
		}
		r.res.Revision = snap.Revision
		return nil
	})
}

// stop moves component's manifest of every control plane aside and waits
// until the kubelet stopped its container.
func (r *run) stop(ctx context.Context, component string) error {
	return r.each(ctx, "stop "+component, func(ctx context.Context, c *cp) error {
		if !c.aside[component] {
			if _, err := c.n.Run(ctx, fmt.Sprintf("install -d -m 0700 %[1]s && mv %[2]s %[1]s/", AsideDir, kubeadm.Manifest(component))); err != nil {
				return err
			}
			c.aside[component] = true
		}
		// The kubelet would give it the pod's grace period (30 s for the
		// API server, which waits for its open requests): stopped at once
		// as renew stops it, SIGKILL after kubeadm.StopGrace.
		if _, err := kubeadm.StopRunning(ctx, c.n, component); err != nil {
			return err
		}
		return r.wait(ctx, component+" stopped", func(ctx context.Context) error {
			ids, err := kubeadm.RunningContainers(ctx, c.n, component)
			if err == nil && ids != "" {
				err = fmt.Errorf("container %s still runs", strings.ReplaceAll(ids, "\n", ", "))
			}
			return err
		})
	})
}

// start moves component's manifest back on every control plane.
func (r *run) start(ctx context.Context, c *cp, component string) error {
	if !c.aside[component] {
		return nil
	}
	if _, err := c.n.Run(ctx, fmt.Sprintf("mv %s/%s.yaml %s/", AsideDir, component, kubeadm.ManifestsDir)); err != nil {
		return err
	}
	c.aside[component] = false
	return nil
}

// restore uploads the snapshot and restores every member from it.
func (r *run) restore(ctx context.Context) error {
	fi, err := os.Stat(r.snapshot)
	if err != nil {
		return err
	}
	err = r.each(ctx, fmt.Sprintf("restore etcd (%d bytes)", fi.Size()), func(ctx context.Context, c *cp) error {
		if err := nodetimer.InstallBinary(ctx, c.n, r.o.Binary); err != nil {
			return err
		}
		f, err := os.Open(r.snapshot)
		if err != nil {
			return err
		}
		defer f.Close()
		remote := NodeDir + "/snapshot.db"
		if _, err := c.n.Run(ctx, "install -d -m 0700 "+NodeDir); err != nil {
			return err
		}
		if err := c.n.WriteFile(ctx, remote, f, node.WriteOptions{Mode: 0o600}); err != nil {
			return err
		}
		args := []string{nodetimer.NodeBinary, "etcd", "restore-member", remote,
			"--name", c.member.Name, "--initial-cluster", r.initialCluster, "--token", r.res.Token,
			"--data-dir", c.member.DataDir, "-o", "json"}
		for _, u := range c.member.PeerURLs {
			args = append(args, "--peer-url", u)
		}
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = node.ShellQuote(a)
		}
		r.moved.Store(true)
		res, err := c.n.Run(ctx, strings.Join(q, " "))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(res.Stdout, &c.restored); err != nil {
			return fmt.Errorf("restore-member's answer %q: %w", bytes.TrimSpace(res.Stdout), err)
		}
		for i := range r.res.Members {
			if r.res.Members[i].Node == c.in.Name {
				r.res.Members[i].Aside = c.restored.Aside
			}
		}
		return nil
	})
	return err
}

func (r *run) startEtcd(ctx context.Context) error {
	if err := r.each(ctx, "start etcd", func(ctx context.Context, c *cp) error {
		// A member that crashed before (its data lost) has a restart
		// back-off of up to 5 minutes in the kubelet, kept across its
		// manifest's removal: a restarted kubelet starts it at once.
		if err := kubeadm.RestartKubelet(ctx, c.n); err != nil {
			return err
		}
		if err := r.start(ctx, c, kubeadm.Etcd); err != nil {
			return err
		}
		return r.wait(ctx, "etcd healthy", func(ctx context.Context) error { return kubeadm.Healthy(ctx, c.n, kubeadm.Etcd) })
	}); err != nil {
		return err
	}
	c := r.cps[0]
	return r.o.Status.Do(fmt.Sprintf("%d etcd members started and healthy", len(r.cps)), func() error {
		return r.wait(ctx, "every etcd member healthy", func(ctx context.Context) error {
			cli, err := etcd.Connect(ctx, c.n, c.client, etcd.ClientOptions{Timeout: 10 * time.Second, Endpoints: []string{kubeadm.LocalEtcd}})
			if err != nil {
				return err
			}
			defer cli.Close()
			ms, err := cli.Members(ctx)
			if err != nil {
				return err
			}
			if len(ms) != len(r.cps) {
				return fmt.Errorf("%d etcd members, want %d", len(ms), len(r.cps))
			}
			return cli.Health(ctx)
		})
	})
}

func (r *run) startAPIServers(ctx context.Context) error {
	return r.each(ctx, "start kube-apiserver", func(ctx context.Context, c *cp) error {
		if err := r.start(ctx, c, kubeadm.APIServer); err != nil {
			return err
		}
		return r.wait(ctx, "kube-apiserver ready", func(ctx context.Context) error { return kubeadm.Healthy(ctx, c.n, kubeadm.APIServer) })
	})
}

// restartControllers restarts the controller-manager and the scheduler, so
// that they start from the restored state (their leases and caches).
func (r *run) restartControllers(ctx context.Context) error {
	return r.each(ctx, "restart kube-controller-manager, kube-scheduler", func(ctx context.Context, c *cp) error {
		for _, comp := range []string{kubeadm.ControllerManager, kubeadm.Scheduler} {
			err := kubeadm.Restart(ctx, c.n, comp,
				func(what string, f func(context.Context) error) error { return r.wait(ctx, what, f) },
				func(ctx context.Context) error { return kubeadm.Healthy(ctx, c.n, comp) })
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// restartKubelets restarts every node's kubelet, so that it lists its pods
// and Node again from the restored state. The Nodes' Ready heartbeats are
// noted first: the restored Nodes are Ready by the snapshot's old status.
func (r *run) restartKubelets(ctx context.Context) error {
	nodes := make([]inventory.Node, 0, len(r.cps)+len(r.others))
	for _, c := range r.cps {
		nodes = append(nodes, c.in)
	}
	nodes = append(nodes, r.others...)
	cs, err := r.client(ctx)
	if err != nil {
		return err
	}
	r.heartbeats = map[string]time.Time{}
	if err := r.wait(ctx, "the Nodes listed before the kubelets' restart", func(ctx context.Context) error {
		nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for i := range nl.Items {
			r.heartbeats[nl.Items[i].Name] = kubeadm.ReadyHeartbeat(&nl.Items[i])
		}
		return nil
	}); err != nil {
		return err
	}
	_, err = node.Parallel(ctx, nodes, len(nodes), func(ctx context.Context, in inventory.Node) (struct{}, error) {
		return struct{}{}, r.o.Status.Do(in.Name+": restart the kubelet", func() error {
			n, err := r.o.Connector.Connect(ctx, in)
			if err != nil {
				return err
			}
			return kubeadm.RestartKubelet(ctx, node.Sudo(n))
		})
	})
	return err
}

// client is an admin client through the control-plane endpoint, dialled
// through the first control plane; made once (admin.conf read over the
// node), for the kubelets' restart and the gate.
func (r *run) client(ctx context.Context) (kubernetes.Interface, error) {
	if r.cs == nil {
		cs, err := kubeadm.AdminClient(ctx, r.cps[0].n, "https://"+r.res.Endpoint)
		if err != nil {
			return nil, err
		}
		r.cs = cs
	}
	return r.cs, nil
}

// gate waits for /readyz through the control-plane endpoint and every Node
// of the inventory Ready by a status its restarted kubelet posted.
func (r *run) gate(ctx context.Context) error {
	cs, err := r.client(ctx)
	if err != nil {
		return err
	}
	if err := r.o.Status.Do("/readyz through "+r.res.Endpoint, func() error {
		return r.wait(ctx, "/readyz through "+r.res.Endpoint, func(ctx context.Context) error {
			return cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
		})
	}); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, c := range r.cps {
		want[c.in.Name] = true
	}
	for _, n := range r.others {
		want[n.Name] = true
	}
	return r.o.Status.Do(fmt.Sprintf("%d Nodes Ready", len(want)), func() error {
		return r.wait(ctx, "every Node Ready", func(ctx context.Context) error {
			nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			return notReady(nl.Items, want, r.heartbeats)
		})
	})
}

// notReady says which Nodes of want are missing from nodes, not Ready, or
// Ready only by a heartbeat no newer than the one noted before their
// kubelet's restart.
func notReady(nodes []corev1.Node, want map[string]bool, before map[string]time.Time) error {
	var errs []error
	seen := map[string]bool{}
	for i := range nodes {
		n := &nodes[i]
		seen[n.Name] = true
		if !want[n.Name] {
			continue
		}
		if err := kubeadm.ReadySince(n, before[n.Name]); err != nil {
			errs = append(errs, fmt.Errorf("Node %s %w", n.Name, err))
		}
	}
	for name := range want {
		if !seen[name] {
			errs = append(errs, fmt.Errorf("no Node %s", name))
		}
	}
	return errors.Join(errs...)
}

func (r *run) cleanup(ctx context.Context) error {
	return r.each(ctx, "remove the uploaded snapshot", func(ctx context.Context, c *cp) error {
		_, err := c.n.Run(ctx, "rm -rf "+NodeDir)
		return err
	})
}

// failed reports a failed or interrupted run. Before any data directory
// moved, the stopped components are started again (on a context of its
// own: an interrupt must not stop the putting back); after, the nodes are
// left for the run that completes the restore, and the error says how to
// finish or go back.
func (r *run) failed(ctx context.Context, err error) error {
	if !r.moved.Load() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		perr := r.each(cctx, "put back (nothing restored)", func(ctx context.Context, c *cp) error {
			return errors.Join(r.start(ctx, c, kubeadm.Etcd), r.start(ctx, c, kubeadm.APIServer))
		})
		if perr != nil {
			return errors.Join(err, fmt.Errorf("putting the manifests back from %s: %w", AsideDir, perr))
		}
		return fmt.Errorf("%w (nothing was restored; etcd and the API servers were started again)", err)
	}
	var back []string
	for _, c := range r.cps {
		if c.restored.Aside != "" {
			back = append(back, fmt.Sprintf("%s: %s is %s/member before the restore", c.in.Name, c.restored.Aside, c.member.DataDir))
		}
	}
	if len(back) == 0 {
		back = append(back, "(no member's data was moved yet)")
	}
	return fmt.Errorf(`%w
The restore did not complete. The etcd data before the restore is kept:
  %s
Run the same restore again to complete it (the snapshot is kept in %s).
To go back instead: on every control plane, with etcd and the API server stopped (their manifests in %s),
move the data directory's member/ out of the way and the kept directory to member/, then move the manifests back to %s.`,
		err, strings.Join(back, "\n  "), r.o.WorkDir, AsideDir, kubeadm.ManifestsDir)
}
