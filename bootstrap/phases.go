package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/kubeadm"

	playbooks "github.com/kbootstrap/kbootstrap/ansible-free-playbooks"
	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// ---- loadbalancer ----

type lbPhase struct{ nodes []inventory.Node }

func (p *lbPhase) Name() string  { return "loadbalancer" }
func (p *lbPhase) Title() string { return "Load balancer (playbook loadbalancer)" }
func (p *lbPhase) Prepare(_ context.Context, c *run) error {
	p.nodes = c.inv.ByRole(inventory.RoleLoadBalancer)
	return nil
}
func (p *lbPhase) ShouldRun() bool { return len(p.nodes) > 0 }
func (p *lbPhase) Plan() []string {
	var out []string
	for _, n := range p.nodes {
		out = append(out, n.Name+": haproxy balancing :6443 across the control planes")
	}
	return out
}

func (p *lbPhase) Run(ctx context.Context, c *run) error {
	st := c.status().Start("Load balancer " + names(p.nodes))
	pb, err := playbooks.Shipped("loadbalancer")
	if err != nil {
		st.End(err)
		return err
	}
	recap, err := playbooks.Run(ctx, pb, playbooks.Options{Inventory: c.inv, Nodes: p.nodes, Connector: c.opts.Connector,
		Concurrency: c.opts.Concurrency, Redactor: c.opts.Redactor})
	if err != nil {
		st.End(err)
		return fmt.Errorf("playbook loadbalancer: %w", err)
	}
	changed := 0
	for _, h := range recap.Hosts {
		changed += h.Changed
	}
	c.addChanged(changed)
	if changed == 0 {
		st.SetTitle(st.Title() + ": unchanged")
	}
	st.End(nil)
	return nil
}

func names(ns []inventory.Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ", ")
}

// ---- init ----

// initLocalPhases are kubeadm init's phases (kubeadm v1.34) that work on the
// node itself: checks, certificates, kubeconfigs, static pod manifests and
// the kubelet. wait-control-plane follows; the phases after it only talk to
// the API server, and each converges when run again (kubeadm creates or
// updates what it uploads), so an init that stopped in one of them is
// resumed by kubeadm init again without these.
var initLocalPhases = []string{"preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start"}

// initResumes bounds how often one run resumes a kubeadm init that stopped
// after its control plane came up (each attempt polls the API for up to
// kubeadm's 1-minute API call timeout).
const initResumes = 2

// failedInitPhase returns the phase kubeadm init names in "error execution
// phase upload-config/kubeadm: ..." on the standard error carried by err.
func failedInitPhase(err error) (string, bool) {
	var ee *node.ExitError
	if !errors.As(err, &ee) {
		return "", false
	}
	m := failedPhaseRE.FindStringSubmatch(ee.Stderr)
	if m == nil {
		return "", false
	}
	return m[1], true
}

var failedPhaseRE = regexp.MustCompile(`error execution phase ([a-z0-9/-]+)`)

// resumableInitPhase reports whether kubeadm init stopped in phase after its
// control plane came up (after wait-control-plane).
func resumableInitPhase(phase string) bool {
	top, _, _ := strings.Cut(phase, "/")
	return top != "wait-control-plane" && !slices.Contains(initLocalPhases, top)
}

type initPhase struct{ run, resume bool }

func (p *initPhase) Name() string  { return "init" }
func (p *initPhase) Title() string { return "kubeadm init" }
func (p *initPhase) Prepare(_ context.Context, c *run) error {
	p.run = !c.formed || c.initIncomplete
	p.resume = c.initIncomplete
	if p.run && !p.resume {
		f := c.facts[c.first]
		if f.Joined || f.ControlPlane {
			return fmt.Errorf("node %s: no admin.conf, but it holds kubelet.conf or control-plane manifests (a failed init?): `kbootstrap reset --host %s` first", c.first, c.first)
		}
	}
	return nil
}
func (p *initPhase) ShouldRun() bool { return p.run }
func (p *initPhase) Plan() []string {
	if p.resume {
		return []string{"first control plane: its kubeadm init stopped after the control plane came up (no " + kubeadmConfigMap + " ConfigMap): kubeadm " + kubeadmInitArgs(true)}
	}
	return []string{"first control plane: kubeadm " + kubeadmInitArgs(false) + " (InitConfiguration with a new bootstrap token and certificate key, mode 0600, removed afterwards)"}
}

// initConfigPath is where init writes the first control plane's kubeadm
// configuration (secrets: 0600, removed after use).
const initConfigPath = ConfigDir + "/kubeadm-init.yaml"

// kubeadmInitArgs is the kubeadm init command line with initConfigPath:
// the whole init, or only its phases from wait-control-plane on (resume).
func kubeadmInitArgs(resume bool) string {
	args := "init --config " + initConfigPath + " --upload-certs"
	if resume {
		args += " --skip-phases " + strings.Join(initLocalPhases, ",")
	}
	return args
}

func (p *initPhase) Run(ctx context.Context, c *run) error {
	name := c.first
	title := "Initializing control plane " + name
	if p.resume {
		title = "Resuming kubeadm init on " + name + " (no " + kubeadmConfigMap + " ConfigMap: it stopped after the control plane came up)"
	}
	st := c.status().Start(title)
	err := func() error {
		token, err := NewToken()
		if err != nil {
			return err
		}
		key, err := NewCertificateKey()
		if err != nil {
			return err
		}
		c.addSecret(token, key)
		c.certKey = key
		in, _ := c.inv.Node(name)
		cfg, err := InitConfig(c.cluster, NodeParams{Name: name, Address: in.InternalIP()}, InitParams{Token: token, TokenTTL: ownTokenTTL, CertificateKey: key})
		if err != nil {
			return err
		}
		if err := c.writeSecretFile(ctx, name, initConfigPath, cfg); err != nil {
			return err
		}
		defer c.removeSecretFile(ctx, name, initConfigPath)
		if err := c.kubeadmInit(ctx, name, p.resume); err != nil {
			return err
		}
		c.addChanged(1)
		c.formed, c.initIncomplete = true, false
		c.facts[name].InCluster, c.facts[name].Admin = true, true
		return nil
	}()
	st.End(err)
	if err != nil {
		return err
	}
	return c.ensureNetwork(ctx, false)
}

// kubeadmInit runs kubeadm init with initConfigPath on name, or only its
// phases from wait-control-plane on when resume. An init that stops after
// its control plane came up (kubeadm gives each API call a minute: a load
// balancer not passing requests yet, an API server slow to serve writes) is
// resumed so, up to initResumes times.
func (c *run) kubeadmInit(ctx context.Context, name string, resume bool) error {
	_, err := c.kubeadm(ctx, name, kubeadmInitArgs(resume))
	for attempt := 1; err != nil && attempt <= initResumes && ctx.Err() == nil; attempt++ {
		phase, ok := failedInitPhase(err)
		if !ok || !resumableInitPhase(phase) {
			break
		}
		c.status().Printf("• node %s: kubeadm init stopped in phase %s, after the control plane came up: running its phases from wait-control-plane on again (%d of %d)", name, phase, attempt, initResumes)
		c.log.Warn("kubeadm init resumed", "node", name, "phase", phase, "error", err)
		_, err = c.kubeadm(ctx, name, kubeadmInitArgs(true))
	}
	return err
}

// writeSecretFile writes a file holding secrets: mode 0600 in ConfigDir
// (0700).
func (c *run) writeSecretFile(ctx context.Context, name, path string, content []byte) error {
	n := c.nodes[name]
	if _, err := n.Run(ctx, "install -d -m 0700 "+ConfigDir); err != nil {
		return fmt.Errorf("node %s: %w", name, err)
	}
	if err := n.WriteFile(ctx, path, bytes.NewReader(content), node.WriteOptions{Mode: 0o600}); err != nil {
		return fmt.Errorf("node %s: write %s: %w", name, path, err)
	}
	return nil
}

// ---- joins ----

// caHashOnce reads ca.crt from the first control plane.
func (c *run) caHashOnce(ctx context.Context) (string, error) {
	if c.caHash != "" {
		return c.caHash, nil
	}
	b, err := c.nodes[c.first].ReadFile(ctx, kubeadm.CACert)
	if err != nil {
		return "", fmt.Errorf("node %s: %w", c.first, err)
	}
	h, err := CAHash(b)
	if err != nil {
		return "", fmt.Errorf("node %s: %s: %w", c.first, kubeadm.CACert, err)
	}
	c.caHash = h
	return h, nil
}

// newJoinToken creates a bootstrap token for joins: generated here,
// handed to kubeadm in a 0600 file.
func (c *run) newJoinToken(ctx context.Context, what string) (string, error) {
	token, err := NewToken()
	if err != nil {
		return "", err
	}
	c.addSecret(token)
	// `kubeadm token create` takes a chosen token only as an argument
	// (visible in ps): a Secret of type bootstrap.kubernetes.io/token applied
	// from stdin is the same thing, off every command line.
	id, secret, _ := strings.Cut(token, ".")
	exp := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-%s
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  description: %q
  token-id: %q
  token-secret: %q
  expiration: %q
  usage-bootstrap-authentication: "true"
  usage-bootstrap-signing: "true"
  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token
`, id, "kbootstrap: "+what, id, secret, exp)
	if _, err := c.kubectl(ctx, "apply -f -", node.StdinString(manifest), node.HideOutput(), node.Redact(token, secret)); err != nil {
		return "", fmt.Errorf("bootstrap token for %s: %w", what, err)
	}
	return token, nil
}

// ensureCerts makes sure the kubeadm-certs Secret exists and was encrypted
// with c.certKey: uploaded again (same key) when kubeadm deleted it with its
// token, or with a new key when this run did not do the init.
func (c *run) ensureCerts(ctx context.Context) error {
	if c.certKey != "" {
		res, err := c.kubectl(ctx, "-n kube-system get secret "+certsSecret+" -o name --ignore-not-found")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(res.Stdout)) != "" {
			return nil
		}
		c.status().Printf("• the %s Secret is gone (kubeadm deletes it after %s): uploading the certificates again", certsSecret, certsSecretTTL)
	} else {
		key, err := NewCertificateKey()
		if err != nil {
			return err
		}
		c.addSecret(key)
		c.certKey = key
	}
	in, _ := c.inv.Node(c.first)
	cfg, err := InitConfig(c.cluster, NodeParams{Name: c.first, Address: in.InternalIP()}, InitParams{CertificateKey: c.certKey})
	if err != nil {
		return err
	}
	path := ConfigDir + "/kubeadm-upload-certs.yaml"
	if err := c.writeSecretFile(ctx, c.first, path, cfg); err != nil {
		return err
	}
	defer c.removeSecretFile(ctx, c.first, path)
	_, err = c.kubeadm(ctx, c.first, "init phase upload-certs --upload-certs --config "+path, node.HideOutput())
	return err
}

// join runs kubeadm join on name with a JoinConfiguration in a 0600 file.
func (c *run) join(ctx context.Context, in inventory.Node, token string, controlPlane bool) error {
	hash, err := c.caHashOnce(ctx)
	if err != nil {
		return err
	}
	cfg, err := JoinConfig(c.cluster, NodeParams{Name: in.Name, Address: in.InternalIP()},
		JoinParams{Endpoint: c.endpoint, Token: token, CACertHash: hash, ControlPlane: controlPlane, CertificateKey: c.certKey})
	if err != nil {
		return err
	}
	path := ConfigDir + "/kubeadm-join.yaml"
	if err := c.writeSecretFile(ctx, in.Name, path, cfg); err != nil {
		return err
	}
	defer c.removeSecretFile(ctx, in.Name, path)
	_, err = c.kubeadm(ctx, in.Name, "join --config "+path)
	return err
}

type joinCPPhase struct{ nodes []inventory.Node }

func (p *joinCPPhase) Name() string  { return "join-control-planes" }
func (p *joinCPPhase) Title() string { return "Join control planes, one at a time" }
func (p *joinCPPhase) Prepare(_ context.Context, c *run) error {
	p.nodes = nil
	for _, n := range c.toJoin() {
		if n.Role == inventory.RoleControlPlane && n.Name != c.first {
			p.nodes = append(p.nodes, n)
		}
	}
	return nil
}
func (p *joinCPPhase) ShouldRun() bool { return len(p.nodes) > 0 }
func (p *joinCPPhase) Plan() []string {
	var out []string
	for _, n := range p.nodes {
		out = append(out, n.Name+": kubeadm join --config "+ConfigDir+"/kubeadm-join.yaml (control plane: new bootstrap token, CA hash, certificate key), then wait for its etcd member and Node Ready")
	}
	return out
}

func (p *joinCPPhase) Run(ctx context.Context, c *run) error {
	for _, in := range p.nodes {
		st := c.status().Start("Joining control plane " + in.Name)
		err := c.joinControlPlane(ctx, in)
		st.End(err)
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *run) joinControlPlane(ctx context.Context, in inventory.Node) error {
	if err := c.ensureCerts(ctx); err != nil {
		return err
	}
	token, err := c.newJoinToken(ctx, "join of control plane "+in.Name)
	if err != nil {
		return err
	}
	before, berr := c.etcdMembers(ctx)
	if err := c.join(ctx, in, token, true); err != nil {
		if berr != nil {
			return fmt.Errorf("%w (the etcd members could not be listed before the join: check `kbootstrap etcd members` for a member of %s)", err, in.Name)
		}
		return errors.Join(err, c.removeStrayMember(ctx, in, before))
	}
	c.addChanged(1)
	c.facts[in.Name].InCluster = true
	if err := c.ensureNetwork(ctx, true); err != nil {
		return err
	}
	defer c.addWait(time.Now())
	if err := c.waitEtcdMember(ctx, in); err != nil {
		return err
	}
	return c.waitReady(ctx, in.Name)
}

type joinWorkersPhase struct{ nodes []inventory.Node }

func (p *joinWorkersPhase) Name() string  { return "join-workers" }
func (p *joinWorkersPhase) Title() string { return "Join workers, in parallel" }
func (p *joinWorkersPhase) Prepare(_ context.Context, c *run) error {
	p.nodes = nil
	for _, n := range c.toJoin() {
		if n.Role == inventory.RoleWorker {
			p.nodes = append(p.nodes, n)
		}
	}
	return nil
}
func (p *joinWorkersPhase) ShouldRun() bool { return len(p.nodes) > 0 }
func (p *joinWorkersPhase) Plan() []string {
	var out []string
	for _, n := range p.nodes {
		out = append(out, n.Name+": kubeadm join --config "+ConfigDir+"/kubeadm-join.yaml (new bootstrap token, CA hash), then wait for Node Ready")
	}
	return out
}

func (p *joinWorkersPhase) Run(ctx context.Context, c *run) error {
	token, err := c.newJoinToken(ctx, "join of workers")
	if err != nil {
		return err
	}
	if _, err := c.caHashOnce(ctx); err != nil {
		return err
	}
	_, err = node.Parallel(ctx, p.nodes, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		st := c.status().Start("Joining worker " + in.Name)
		err := c.join(ctx, in, token, false)
		if err == nil {
			c.addChanged(1)
			c.mu.Lock()
			c.facts[in.Name].InCluster = true
			c.mu.Unlock()
		}
		st.End(err)
		return struct{}{}, err
	})
	if nerr := c.ensureNetwork(ctx, true); nerr != nil {
		return errors.Join(err, nerr)
	}
	if err != nil {
		return err
	}
	defer c.addWait(time.Now())
	_, err = node.Parallel(ctx, p.nodes, c.opts.Concurrency, func(ctx context.Context, in inventory.Node) (struct{}, error) {
		return struct{}{}, c.waitReady(ctx, in.Name)
	})
	return err
}

// ---- etcd ----

// etcdClient reaches etcd through the first control plane as its
// kube-apiserver does.
func (c *run) etcdClient(ctx context.Context) (*etcd.Client, error) {
	return etcd.ConnectAsAPIServer(ctx, c.nodes[c.first], etcd.ClientOptions{Timeout: 10 * time.Second})
}

func (c *run) etcdMembers(ctx context.Context) ([]etcd.Member, error) {
	cli, err := c.etcdClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return cli.Members(ctx)
}

// removeStrayMember removes an etcd member a failed join of in left behind
// (one not in before, of in by name or peer address), so that the cluster's
// quorum does not count a member that will never start.
func (c *run) removeStrayMember(ctx context.Context, in inventory.Node, before []etcd.Member) error {
	ctx = context.WithoutCancel(ctx)
	cli, err := c.etcdClient(ctx)
	if err != nil {
		return fmt.Errorf("node %s: could not check for an etcd member left by the failed join: %w", in.Name, err)
	}
	defer cli.Close()
	stray := func(m etcd.Member) bool {
		return m.OfNode(in.Name, in.InternalIP()) && !slices.ContainsFunc(before, func(b etcd.Member) bool { return b.ID == m.ID })
	}
	var removed []string
	err = poll.Until(ctx, 10*time.Second, 2*time.Second, "node "+in.Name+": etcd members listed", func(ctx context.Context) error {
		ms, err := cli.Members(ctx)
		if err != nil {
			return err
		}
		var errs []error
		for _, m := range etcd.FindMembers(ms, stray) {
			if err := cli.RemoveMember(ctx, m); err != nil {
				errs = append(errs, fmt.Errorf("etcd member remove %s (%s): %w", m.ID, in.Name, err))
				continue
			}
			removed = append(removed, m.ID)
		}
		if len(errs) > 0 {
			return poll.Stop(errors.Join(errs...))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node %s: an etcd member of the failed join may be left (check `kbootstrap etcd members`): %w", in.Name, err)
	}
	if len(removed) > 0 {
		msg := fmt.Sprintf("node %s: the failed join had added etcd member %s: removed it, so the cluster's quorum does not wait for it; `kbootstrap reset --host %s` before trying again", in.Name, strings.Join(removed, ", "), in.Name)
		c.status().Printf("• %s", msg)
		return errors.New(msg)
	}
	return nil
}

// waitEtcdMember waits until in's etcd member is started (has a name and
// client URLs) and its endpoint answers.
func (c *run) waitEtcdMember(ctx context.Context, in inventory.Node) error {
	cli, err := c.etcdClient(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	return poll.Until(ctx, c.opts.ReadyTimeout, pollInterval, "node "+in.Name+": etcd member healthy", func(ctx context.Context) error {
		ms, err := cli.Members(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name != in.Name {
				continue
			}
			if len(m.ClientURLs) == 0 || m.IsLearner {
				return fmt.Errorf("etcd member %s is not started yet", m.ID)
			}
			if err := cli.Status(ctx, m.ClientURLs[0]).Problem(); err != nil {
				return fmt.Errorf("etcd member %s: %w", m.ID, err)
			}
			return nil
		}
		return fmt.Errorf("no etcd member named %s", in.Name)
	})
}

// waitReady waits until the Node is Ready.
func (c *run) waitReady(ctx context.Context, name string) error {
	err := poll.Until(ctx, c.opts.ReadyTimeout, pollInterval, "node "+name+": Ready", func(ctx context.Context) error {
		nodes, err := c.clusterNodes(ctx)
		if err != nil {
			return err
		}
		cn, ok := nodes[name]
		switch {
		case !ok:
			return errors.New("no Node object yet")
		case !cn.Ready:
			return errors.New("not Ready")
		}
		return nil
	})
	if err == nil {
		c.mu.Lock()
		c.facts[name].Ready = true
		c.mu.Unlock()
	}
	return err
}
