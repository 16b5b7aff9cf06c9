package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kbootstrap/kbootstrap/kubeadm"

	"github.com/kbootstrap/kbootstrap/progress"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// Paths on the nodes.
const (
	// ConfigDir holds kbootstrap's kubeadm configurations while they are
	// used (mode 0700; files 0600, removed after use).
	ConfigDir      = "/etc/kbootstrap"
	kubectlCmd     = "kubectl --kubeconfig " + kubeadm.AdminConf
	ownTokenTTL    = "1h0m0s"
	certsSecret    = "kubeadm-certs"
	certsSecretTTL = 2 * time.Hour
	// kubeadmConfigMap is what kubeadm join reads the cluster's
	// configuration from (kube-system).
	kubeadmConfigMap = "kubeadm-config"
	// pollInterval is how often a wait looks again.
	pollInterval = 500 * time.Millisecond
)

// Phase is one step of a run. Prepare decides from the facts what the phase
// has to do; ShouldRun says whether that is anything; Plan describes it (a
// dry run prints it); Run does it.
type Phase interface {
	Name() string
	Title() string
	Prepare(ctx context.Context, c *run) error
	ShouldRun() bool
	Plan() []string
	Run(ctx context.Context, c *run) error
}

// phases are the phases of init and join, in order, each in its file
// (phase_*.go). join runs them all but init.
func phases() []Phase {
	return []Phase{&lbPhase{}, &initPhase{}, &joinCPPhase{}, &joinWorkersPhase{}, &networkPhase{}, &kubeconfigPhase{}}
}

// PhaseNames are the names of the phases, in order (--skip-phases).
var PhaseNames = func() []string {
	var out []string
	for _, p := range phases() {
		out = append(out, p.Name())
	}
	return out
}()

// skips reports whether the run was told to skip phase p.
func (c *run) skips(p Phase) bool { return slices.Contains(c.opts.SkipPhases, p.Name()) }

// run is the typed state shared by the phases of one run.
type run struct {
	opts     Options
	inv      *inventory.Inventory
	endpoint string
	cluster  ClusterParams
	selected map[string]bool

	nodes map[string]node.Node // sudo-wrapped connections
	facts map[string]*Facts
	// first is the control plane kubectl and the etcd client go through: a
	// control plane holding admin.conf, or the one init will run on.
	first  string
	formed bool // a cluster existed before this run
	// initIncomplete: first holds admin.conf and its API server answers, but
	// the kubeadm-config ConfigMap is missing: a kubeadm init that stopped
	// after its control plane came up, which init resumes.
	initIncomplete  bool
	certKey         string
	caHash          string
	cluster0        map[string]clusterNode
	mu              sync.Mutex
	changed         int
	kubeadmDur      time.Duration
	waitDur         time.Duration
	log             *slog.Logger
	ownSecrets      []string
	manifestApplied bool
	// kubeRouterApplied: kube-router's manifest was applied in this run.
	kubeRouterApplied bool
	networkDone       bool // the pod network converged over every node in the cluster
}

// addSecret registers secrets with the run's redactor before any command
// that could print them runs.
func (c *run) addSecret(s ...string) {
	c.opts.Redactor.Add(s...)
	secretsMu.Lock()
	c.ownSecrets = append(c.ownSecrets, s...)
	secretsMu.Unlock()
}

func (c *run) status() *progress.Status { return c.opts.Status }

// addWait adds the time since start to the run's waits for etcd members and
// Nodes Ready (Kubernetes converging, not kbootstrap working).
func (c *run) addWait(start time.Time) {
	c.mu.Lock()
	c.waitDur += time.Since(start)
	c.mu.Unlock()
}

func (c *run) addChanged(n int) {
	c.mu.Lock()
	c.changed += n
	c.mu.Unlock()
}

// Init forms the cluster of opts.Inventory, or converges it: the load
// balancer, kubeadm init on the first control plane, the other control planes
// one at a time, the workers in parallel, the pod network and the kubeconfig.
func Init(ctx context.Context, opts Options) (*Result, error) {
	return execute(ctx, opts, false)
}

// Join joins the nodes of the inventory that are not in the cluster yet; the
// cluster must exist.
func Join(ctx context.Context, opts Options) (*Result, error) {
	return execute(ctx, opts, true)
}

func execute(ctx context.Context, opts Options, joinOnly bool) (*Result, error) {
	start := time.Now()
	if opts.Concurrency < 1 {
		opts.Concurrency = 20
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 5 * time.Minute
	}
	if opts.Redactor == nil {
		opts.Redactor = &node.Redactor{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	for _, s := range opts.SkipPhases {
		if !slices.Contains(PhaseNames, s) {
			return nil, fmt.Errorf("--skip-phases %q: not a phase (%s)", s, strings.Join(PhaseNames, ", "))
		}
	}
	inv := opts.Inventory
	if len(inv.ByRole(inventory.RoleControlPlane)) == 0 {
		return nil, fmt.Errorf("%s: no control-plane node", inv.File)
	}
	c := &run{opts: opts, inv: inv, endpoint: inv.Endpoint(), log: opts.Logger, selected: map[string]bool{}}
	sel := opts.Nodes
	if sel == nil {
		sel = inv.Nodes
	}
	for _, n := range sel {
		c.selected[n.Name] = true
	}
	c.cluster = ClusterParams{
		Name: inv.Name, KubernetesVersion: inv.KubernetesVersion, ControlPlaneEndpoint: c.endpoint,
		PodSubnet: inv.PodSubnet, ServiceSubnet: inv.ServiceSubnet, DNSDomain: inv.DNSDomain,
		CertificateValidity: inv.CertificateValidity, Patches: inv.KubeadmConfigPatches,
	}
	if c.cluster.PodSubnet == "" && inv.Network.Manifest == "" {
		// kube-router and host-gw need the controller-manager to allocate
		// node CIDRs.
		c.cluster.PodSubnet = "10.244.0.0/16"
	}

	if err := c.gather(ctx); err != nil {
		return nil, err
	}
	if joinOnly && !c.formed {
		return nil, fmt.Errorf("no control plane of %s holds %s: there is no cluster to join yet (run kbootstrap init)", inv.File, kubeadm.AdminConf)
	}
	if joinOnly && c.initIncomplete {
		return nil, fmt.Errorf("node %s: the kubeadm init there did not finish (no %s ConfigMap): run kbootstrap init to resume it", c.first, kubeadmConfigMap)
	}
	var todo []Phase
	for _, p := range phases() {
		if c.skips(p) {
			continue
		}
		if _, isInit := p.(*initPhase); joinOnly && isInit {
			continue
		}
		if err := p.Prepare(ctx, c); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name(), err)
		}
		if p.ShouldRun() {
			todo = append(todo, p)
		}
	}
	if errs := preflight(inv, c.facts, c.toJoin()); len(errs) > 0 {
		return nil, fmt.Errorf("preflight: nothing was changed:\n%w", errors.Join(errs...))
	}
	if opts.DryRun {
		st := c.status()
		if len(todo) == 0 {
			st.Printf("Plan: nothing to do, the cluster %s is as the inventory says", inv.Name)
		}
		for _, p := range todo {
			st.Printf("Plan: %s (%s)", p.Title(), p.Name())
			for _, l := range p.Plan() {
				st.Printf("  %s", l)
			}
		}
		return &Result{Took: time.Since(start)}, nil
	}
	for _, p := range todo {
		if err := p.Run(ctx, c); err != nil {
			return c.result(start), err
		}
	}
	res := c.result(start)
	if res.Changed == 0 {
		fmt.Fprintf(opts.Out, "Cluster %s is already formed as the inventory says: nothing changed (%s)\n", inv.Name, res.Took.Round(100*time.Millisecond))
	} else {
		fmt.Fprintf(opts.Out, "Cluster %s ready behind %s: %d changes in %s (kubeadm %s, waiting for etcd members and Nodes Ready %s); kubeconfig %s\n",
			inv.Name, c.endpoint, res.Changed, res.Took.Round(100*time.Millisecond), res.KubeadmTime.Round(100*time.Millisecond),
			res.WaitTime.Round(100*time.Millisecond), res.Kubeconfig)
	}
	return res, nil
}

func (c *run) result(start time.Time) *Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &Result{Changed: c.changed, Took: time.Since(start), KubeadmTime: c.kubeadmDur, WaitTime: c.waitDur, Kubeconfig: c.kubeconfigPath()}
}

func (c *run) kubeconfigPath() string {
	if c.opts.KubeconfigOut != "" {
		return c.opts.KubeconfigOut
	}
	return kubeadm.DefaultKubeconfigPath(c.inv.Name)
}

// toJoin lists the selected Kubernetes nodes that are not in the cluster.
func (c *run) toJoin() []inventory.Node {
	var out []inventory.Node
	for _, n := range c.inv.Nodes {
		if n.Role == inventory.RoleLoadBalancer || !c.selected[n.Name] {
			continue
		}
		if f := c.facts[n.Name]; f != nil && !f.InCluster && !(n.Name == c.first && c.formed) {
			out = append(out, n)
		}
	}
	return out
}

// gather connects to every node and reads its facts, then the Node objects
// through a control plane holding admin.conf.
func (c *run) gather(ctx context.Context) error {
	st := c.status().Start("Gathering facts")
	c.nodes = map[string]node.Node{}
	c.facts = map[string]*Facts{}
	var mu sync.Mutex
	_, err := node.Parallel(ctx, c.inv.Nodes, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		n, err := c.opts.Connector.Connect(ctx, in)
		if err != nil {
			return struct{}{}, err
		}
		n = node.Sudo(n)
		f, err := gatherFacts(ctx, n, in)
		if err != nil {
			return struct{}{}, err
		}
		mu.Lock()
		c.nodes[in.Name], c.facts[in.Name] = n, f
		mu.Unlock()
		return struct{}{}, nil
	})
	if err != nil {
		st.End(errors.New("some nodes could not be reached"))
		return err
	}
	for _, n := range c.inv.ByRole(inventory.RoleControlPlane) {
		if c.facts[n.Name].Admin {
			c.first, c.formed = n.Name, true
			break
		}
	}
	if c.first == "" {
		c.first = c.inv.ByRole(inventory.RoleControlPlane)[0].Name
	}
	if c.formed {
		nodes, err := c.clusterNodes(ctx)
		if err != nil {
			st.End(err)
			return err
		}
		c.cluster0 = nodes
		for name, f := range c.facts {
			if cn, ok := nodes[name]; ok {
				f.InCluster, f.Ready, f.PodCIDR = true, cn.Ready, cn.PodCIDR
			}
		}
		// kubeadm join reads the cluster's configuration from this
		// ConfigMap, which kubeadm init uploads once the control plane is up.
		res, err := c.kubectl(ctx, "-n kube-system get configmap "+kubeadmConfigMap+" -o name --ignore-not-found")
		if err != nil {
			st.End(err)
			return err
		}
		c.initIncomplete = strings.TrimSpace(string(res.Stdout)) == ""
	}
	// The cgroup driver and swap decide the KubeletConfiguration.
	cp := c.facts[c.first]
	c.cluster.CgroupDriver = cp.CgroupDriver
	c.cluster.FailSwapOn = true
	for _, f := range c.facts {
		if f.Swap && f.Role != string(inventory.RoleLoadBalancer) {
			c.cluster.FailSwapOn = false
		}
	}
	var summary []string
	for _, n := range c.inv.Nodes {
		f := c.facts[n.Name]
		state := "new"
		switch {
		case n.Role == inventory.RoleLoadBalancer:
			state = "load balancer"
		case f.InCluster && f.Ready:
			state = "Ready"
		case f.InCluster:
			state = "joined"
		}
		summary = append(summary, n.Name+" "+state)
		c.log.Debug("facts", "node", n.Name, "facts", fmt.Sprintf("%+v", *f))
	}
	st.SetTitle("Gathering facts: " + strings.Join(summary, ", "))
	st.End(nil)
	return nil
}

// clusterNodes lists the Node objects through the first control plane.
func (c *run) clusterNodes(ctx context.Context) (map[string]clusterNode, error) {
	res, err := c.kubectl(ctx, "get nodes -o json")
	if err != nil {
		return nil, err
	}
	return parseNodes(res.Stdout)
}

// kubectl runs kubectl with the admin kubeconfig on the first control plane.
func (c *run) kubectl(ctx context.Context, args string, opts ...node.ExecOption) (node.Result, error) {
	// Its own API server, not the endpoint: a load balancer may still send
	// a request to a control plane being reset or joined.
	in, _ := c.inv.Node(c.first)
	cmd := kubectlCmd + " --server https://" + net.JoinHostPort(in.InternalIP(), "6443") + " " + args
	res, err := c.nodes[c.first].Run(ctx, cmd, opts...)
	if err != nil {
		return res, fmt.Errorf("node %s: kubectl %s: %w", c.first, args, err)
	}
	return res, nil
}

// kubeadm runs kubeadm on n, streaming its output when asked (redacted),
// and adds its duration to the run's kubeadm time.
func (c *run) kubeadm(ctx context.Context, name, args string, opts ...node.ExecOption) (node.Result, error) {
	n := c.nodes[name]
	opts = append(opts, node.Redact(c.secrets()...))
	var ws []*node.LineWriter
	if c.opts.Stream && c.opts.Status != nil {
		w1 := node.PrefixWriter(c.opts.Status, name+": ", c.opts.Redactor)
		w2 := node.PrefixWriter(c.opts.Status, name+": ", c.opts.Redactor)
		ws = append(ws, w1, w2)
		opts = append(opts, node.StreamStdout(w1), node.StreamStderr(w2))
	}
	start := time.Now()
	res, err := n.Run(ctx, "kubeadm "+args, opts...)
	took := time.Since(start)
	for _, w := range ws {
		w.Flush()
	}
	c.mu.Lock()
	c.kubeadmDur += took
	c.mu.Unlock()
	c.log.Debug("kubeadm", "node", name, "args", args, "took", took)
	if err != nil {
		var ee *node.ExitError
		if !errors.As(err, &ee) && ctx.Err() == nil {
			return res, fmt.Errorf("node %s: kubeadm %s: %w (the connection to %s was lost: partitioned or powered off?)", name, args, err, name)
		}
		return res, fmt.Errorf("node %s: kubeadm %s: %w", name, args, err)
	}
	return res, nil
}

// removeSecretFile removes a file holding secrets, and says so when it
// cannot (the node is gone): the secrets in it expire with their token
// (1h) and the uploaded certificates (2h).
func (c *run) removeSecretFile(ctx context.Context, name, path string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := c.nodes[name].Remove(rctx, path); err != nil {
		c.status().Printf("• node %s: could not remove %s (mode 0600; its token expires in 1h, the uploaded certificates in 2h): remove it by hand", name, path)
	}
}

var secretsMu sync.Mutex

// secrets are the values registered with the redactor by this run.
func (c *run) secrets() []string {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	return append([]string(nil), c.ownSecrets...)
}
