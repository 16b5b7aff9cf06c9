package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Node is a running (or stopped) node of a lab.
type Node struct {
	Name, Role string
	// Addresses has one address per network the node is on, in the order of NodeSpec.Networks
	// (eth0, eth1), e.g. ["10.77.0.11"].
	Addresses []string
	// HostPID is the PID, on the host, of the node's PID 1 (tini); 0 when the node is stopped.
	HostPID int
}

// Lab is a set of nodes brought up by Up or found by Load.
type Lab struct {
	Config Config
	Nodes  []Node
	// KeyFile is the private key that logs in as root and vagrant on every node; KnownHostsFile
	// holds every node's host key for each of its addresses; InventoryFile is a kbootstrap
	// inventory of the nodes.
	KeyFile, KnownHostsFile, InventoryFile string

	mu        sync.Mutex // guards the fields below and Nodes; serializes Stop, Start, ...
	log       *logger
	rootfs    string
	artifacts string
	nodes     []*nodeState
}

// state is <Dir>/state.json.
type state struct {
	Config    Config
	RootFS    string
	Artifacts string
	Nodes     []*nodeState
}

const stateFile = "state.json"

// Up brings up the lab described by cfg and returns when every node's sshd accepts TCP on :22.
// It is idempotent-ish: when cfg.Dir holds a lab already, nodes that are up stay up, stopped
// nodes are started, and nodes of cfg that are new are added.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	start := time.Now()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: Up needs root (network namespaces, bridges, mounts)")
	}
	if cfg.Kubernetes {
		if err := checkHostLimits(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	unlock, err := flock(ctx, filepath.Join(cfg.Dir, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer unlock()
	l := newLab(cfg)
	if err := l.readState(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// Merge the requested nodes into the recorded ones.
	used := map[int]bool{}
	for _, n := range l.nodes {
		used[n.Index] = true
	}
	next := 1
	for _, spec := range cfg.Nodes {
		if n := l.find(spec.Name); n != nil {
			if n.Role != spec.Role || fmt.Sprint(n.Networks) != fmt.Sprint(spec.Networks) {
				return nil, fmt.Errorf("lab %s: node %s exists as %s on networks %v; Down the lab to change it to %s on %v",
					cfg.ID, n.Name, n.Role, n.Networks, spec.Role, spec.Networks)
			}
			continue
		}
		for used[next] {
			next++
		}
		used[next] = true
		n := &nodeState{Name: spec.Name, Role: spec.Role, Index: next, Networks: spec.Networks}
		for _, k := range spec.Networks {
			a, err := hostAddr(cfg.subnetFor(k), firstHost-1+next)
			if err != nil {
				return nil, fmt.Errorf("lab: node %s: %w", n.Name, err)
			}
			n.Addresses = append(n.Addresses, a.String())
		}
		l.nodes = append(l.nodes, n)
	}
	if len(l.nodes) == 0 {
		return nil, fmt.Errorf("lab %s: no nodes", cfg.ID)
	}
	if l.artifacts == "" || cfg.ArtifactsDir != "" {
		l.artifacts = findArtifacts(cfg)
	}
	if l.artifacts != "" {
		l.log.printf("artifacts %s will be mounted read-only at /opt/kbootstrap/bin", l.artifacts)
	}

	// The rootfs (maybe a minute the first time), the client key and the network.
	errs := make([]error, 3)
	done := make(chan int, 3)
	go func() {
		if l.rootfs == "" || !isDir(l.rootfs) {
			l.rootfs, errs[0] = ensureRootfs(ctx, variantFor(cfg.Kubernetes), l.log)
		}
		done <- 0
	}()
	go func() { errs[1] = l.ensureClientKey(ctx); done <- 1 }()
	go func() {
		second := false
		for _, n := range l.nodes {
			for _, k := range n.Networks {
				second = second || k == 1
			}
		}
		errs[2] = ensureNetwork(ctx, cfg, second, l.log)
		done <- 2
	}()
	for range 3 {
		<-done
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := l.writeState(); err != nil {
		return nil, err
	}

	hosts := l.etcHosts()
	nodesStart := time.Now()
	sem := make(chan struct{}, 6) // bounds the process spawning, not the waiting for sshd
	err = parallel(len(l.nodes), len(l.nodes), func(i int) error {
		n := l.nodes[i]
		t := time.Now()
		if l.alive(n) {
			if err := l.waitSSH(ctx, n); err != nil {
				return err
			}
			l.log.step(t, "node %s already up at %s", n.Name, strings.Join(n.Addresses, ", "))
			return nil
		}
		if err := l.boot(ctx, n, hosts, sem); err != nil {
			return err
		}
		l.log.step(t, "node %s up at %s", n.Name, strings.Join(n.Addresses, ", "))
		return nil
	})
	l.refresh()
	if werr := l.writeFiles(); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		return l, err
	}
	l.log.step(nodesStart, "%d nodes up", len(l.nodes))
	l.log.step(start, "lab %s up; inventory %s", cfg.ID, l.InventoryFile)
	return l, nil
}

func newLab(cfg Config) *Lab {
	return &Lab{
		Config:         cfg,
		KeyFile:        filepath.Join(cfg.Dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(cfg.Dir, "known_hosts"),
		InventoryFile:  filepath.Join(cfg.Dir, "kbootstrap.yaml"),
		log:            &logger{w: cfg.Log},
	}
}

// boot prepares a stopped node's disk and network, starts it and waits for its sshd. sem, when not
// nil, bounds how many nodes are being prepared and launched at once.
func (l *Lab) boot(ctx context.Context, n *nodeState, hosts string, sem chan struct{}) error {
	err := func() error {
		if sem != nil {
			sem <- struct{}{}
			defer func() { <-sem }()
		}
		// Anything left of an earlier incarnation (a launcher whose PID 1 died) goes first.
		if err := l.kill(ctx, n); err != nil {
			return err
		}
		if err := l.prepareNode(ctx, n, hosts); err != nil {
			return fmt.Errorf("lab: node %s: %w", n.Name, err)
		}
		if err := ensureNodeNetwork(ctx, l.Config, n); err != nil {
			return err
		}
		return l.launch(ctx, n)
	}()
	if err != nil {
		return err
	}
	return l.waitSSH(ctx, n)
}

// Load returns the lab whose state a previous Up wrote to dir.
func Load(dir string) (*Lab, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	l := newLab(Config{Dir: dir})
	if err := l.readState(); err != nil {
		return nil, err
	}
	l.refresh()
	return l, nil
}

func (l *Lab) readState() error {
	b, err := os.ReadFile(filepath.Join(l.Config.Dir, stateFile))
	if err != nil {
		return fmt.Errorf("lab: no lab in %s: %w", l.Config.Dir, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("lab: %s: %w", filepath.Join(l.Config.Dir, stateFile), err)
	}
	if l.Config.ID != "" && st.Config.ID != l.Config.ID {
		return fmt.Errorf("lab: %s holds lab %q, not %q: Down it first or use another Dir", l.Config.Dir, st.Config.ID, l.Config.ID)
	}
	if l.Config.ID != "" && st.Config.Kubernetes != l.Config.Kubernetes {
		return fmt.Errorf("lab %s: the lab in %s has Kubernetes=%v, not %v: Down it first", l.Config.ID, l.Config.Dir,
			st.Config.Kubernetes, l.Config.Kubernetes)
	}
	if l.Config.ID == "" { // Load
		w, dir := l.Config.Log, l.Config.Dir
		l.Config = st.Config
		l.Config.Dir = dir
		l.Config.Log = w
		if l.Config.Log == nil {
			l.Config.Log = discard{}
		}
		l.log = &logger{w: l.Config.Log}
	} else {
		if l.Config.Subnet != st.Config.Subnet || l.Config.Subnet2 != st.Config.Subnet2 {
			return fmt.Errorf("lab %s: subnets %s, %s differ from the running lab's %s, %s: Down it first",
				l.Config.ID, l.Config.Subnet, l.Config.Subnet2, st.Config.Subnet, st.Config.Subnet2)
		}
	}
	l.rootfs, l.artifacts, l.nodes = st.RootFS, st.Artifacts, st.Nodes
	return nil
}

func (l *Lab) writeState() error {
	cfg := l.Config
	cfg.Nodes = nil
	for _, n := range l.nodes {
		cfg.Nodes = append(cfg.Nodes, NodeSpec{Name: n.Name, Role: n.Role, Networks: n.Networks})
	}
	b, err := json.MarshalIndent(state{Config: cfg, RootFS: l.rootfs, Artifacts: l.artifacts, Nodes: l.nodes}, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(l.Config.Dir, stateFile), append(b, '\n'), 0o644)
}

// refresh rebuilds the public Nodes (a new slice: callers may hold the old one) from the
// recorded ones, clearing PIDs of dead nodes.
func (l *Lab) refresh() {
	nodes := make([]Node, 0, len(l.nodes))
	for _, n := range l.nodes {
		if !l.alive(n) {
			n.HostPID = 0
		}
		nodes = append(nodes, Node{Name: n.Name, Role: n.Role, Addresses: append([]string(nil), n.Addresses...), HostPID: n.HostPID})
	}
	l.Nodes = nodes
}

// syncLog follows a change of Config.Log made after Up or Load.
func (l *Lab) syncLog() {
	if l.Config.Log == nil {
		l.Config.Log = discard{}
	}
	if l.log == nil || l.log.w != l.Config.Log {
		l.log = &logger{w: l.Config.Log}
	}
}

func (l *Lab) find(name string) *nodeState {
	for _, n := range l.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Node returns the node called name. Lab's methods are safe for concurrent use.
func (l *Lab) Node(name string) (Node, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// locked runs f on the node called name with the lab directory locked and the state re-read
// (another process may have changed it), then saves the state.
func (l *Lab) locked(ctx context.Context, name string, f func(n *nodeState) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.syncLog()
	unlock, err := flock(ctx, filepath.Join(l.Config.Dir, ".lock"))
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer unlock()
	if err := l.readState(); err != nil {
		return err
	}
	n := l.find(name)
	if n == nil {
		return fmt.Errorf("lab %s: no node %q", l.Config.ID, name)
	}
	err = f(n)
	l.refresh()
	return errors.Join(err, l.writeState())
}

// Stop kills the node's processes, like pulling a VM's power cord. Its disk (the upper directory),
// host key, address and network namespace are kept for Start.
func (l *Lab) Stop(ctx context.Context, name string) error {
	return l.locked(ctx, name, func(n *nodeState) error {
		t := time.Now()
		if err := l.kill(ctx, n); err != nil {
			return err
		}
		l.log.step(t, "node %s stopped", name)
		return nil
	})
}

// Start boots a stopped node again, with the same disk, host key and addresses. Starting a
// running node does nothing.
func (l *Lab) Start(ctx context.Context, name string) error {
	return l.locked(ctx, name, func(n *nodeState) error {
		t := time.Now()
		if l.alive(n) {
			return nil
		}
		if l.rootfs == "" || !isDir(l.rootfs) {
			return fmt.Errorf("lab %s: node %s: its rootfs %q is gone", l.Config.ID, name, l.rootfs)
		}
		if err := l.boot(ctx, n, l.etcHosts(), nil); err != nil {
			return err
		}
		l.log.step(t, "node %s started", name)
		return nil
	})
}

// Recreate destroys the node and boots a new, empty machine under the same
// name and addresses: a fresh disk, a new host key (the lab's known_hosts
// is rewritten with it: a client holding the old one sees a changed key)
// and a new machine-id. What a lost machine replaced by a new one looks like.
func (l *Lab) Recreate(ctx context.Context, name string) error {
	err := l.locked(ctx, name, func(n *nodeState) error {
		t := time.Now()
		if err := l.kill(ctx, n); err != nil {
			return err
		}
		if err := os.RemoveAll(l.nodeDir(n.Name)); err != nil {
			return fmt.Errorf("lab: node %s: remove its disk: %w", n.Name, err)
		}
		if l.rootfs == "" || !isDir(l.rootfs) {
			return fmt.Errorf("lab %s: node %s: its rootfs %q is gone", l.Config.ID, name, l.rootfs)
		}
		if err := l.boot(ctx, n, l.etcHosts(), nil); err != nil {
			return err
		}
		l.log.step(t, "node %s recreated empty", name)
		return nil
	})
	if err != nil {
		return err
	}
	return l.writeFiles()
}

// Partition cuts the node off every network it is on (its veths go down on the host side); its
// processes keep running.
func (l *Lab) Partition(ctx context.Context, name string) error {
	return l.locked(ctx, name, func(n *nodeState) error {
		t := time.Now()
		if err := setLinks(ctx, l.Config, n, false); err != nil {
			return err
		}
		n.Partitioned = true
		l.log.step(t, "node %s partitioned", name)
		return nil
	})
}

// Heal reconnects a partitioned node.
func (l *Lab) Heal(ctx context.Context, name string) error {
	return l.locked(ctx, name, func(n *nodeState) error {
		t := time.Now()
		if err := setLinks(ctx, l.Config, n, true); err != nil {
			return err
		}
		n.Partitioned = false
		l.log.step(t, "node %s healed", name)
		return nil
	})
}

// Exec runs a command as root inside the node (nsenter into all its namespaces and its root) and
// returns its combined output. The environment is clean (PATH, HOME=/root, LANG=C.UTF-8). A
// failing command returns a *RunError carrying the exit code.
func (l *Lab) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("lab: Exec: no command")
	}
	pid, cgroups, err := l.hostPID(name)
	if err != nil {
		return nil, err
	}
	return run(ctx, nil, execArgs(pid, cgroups, args)...)
}

// hostPID returns the PID of the running node's init and the node's cgroups, looking at the state
// on disk when the node is not running as far as this Lab knows (another process may have started
// it).
func (l *Lab) hostPID(name string) (int, []string, error) {
	l.mu.Lock()
	n := l.find(name)
	var pid int
	var cgroups []string
	if n != nil && l.alive(n) {
		pid, cgroups = n.HostPID, n.Cgroups
	}
	l.mu.Unlock()
	if n == nil {
		return 0, nil, fmt.Errorf("lab %s: no node %q", l.Config.ID, name)
	}
	if pid == 0 {
		if m, err := Load(l.Config.Dir); err == nil {
			if mn := m.find(name); mn != nil && m.alive(mn) {
				pid, cgroups = mn.HostPID, mn.Cgroups
			}
		}
	}
	if pid == 0 {
		return 0, nil, fmt.Errorf("lab %s: node %s is not running", l.Config.ID, name)
	}
	return pid, cgroups, nil
}

// execArgs is the command line that runs args inside a node: in its namespaces and root and, for
// a node with cgroups of its own, in its cgroups.
func execArgs(pid int, cgroups []string, args []string) []string {
	ns := append([]string{"nsenter", "--all", "--root", "--wd", "-t", strconv.Itoa(pid), "--",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8", "TERM=dumb"}, args...)
	if len(cgroups) == 0 {
		return ns
	}
	return append([]string{"/usr/bin/env", "LAB_JOIN_CGROUPS=" + strings.Join(cgroups, " "),
		"/bin/sh", "-c", cgroupJoinScript, "lab-exec"}, ns...)
}

// ExecArgs returns the host command line that runs args inside the node, for callers that want to
// wire stdin/stdout themselves (the lab command's exec).
func (l *Lab) ExecArgs(name string, args ...string) ([]string, error) {
	pid, cgroups, err := l.hostPID(name)
	if err != nil {
		return nil, err
	}
	return execArgs(pid, cgroups, args), nil
}

// SSHListening reports whether the node's sshd listens on port 22 (it may have died: see the
// node's console.log).
func (l *Lab) SSHListening(name string) bool {
	pid, _, err := l.hostPID(name)
	return err == nil && listening(pid, 22)
}

// SSHArgs returns an ssh command line that logs in to the node's first address as user with the
// lab's key and known_hosts (strict host key checking).
func (l *Lab) SSHArgs(name, user string) ([]string, error) {
	n, ok := l.Node(name)
	if !ok {
		return nil, fmt.Errorf("lab %s: no node %q", l.Config.ID, name)
	}
	return []string{"ssh", "-i", l.KeyFile, "-o", "UserKnownHostsFile=" + l.KnownHostsFile,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "ConnectTimeout=5", user + "@" + n.Addresses[0]}, nil
}

func (l *Lab) ensureClientKey(ctx context.Context) error {
	if _, err := os.Stat(l.KeyFile + ".pub"); err == nil {
		return nil
	}
	t := time.Now()
	os.Remove(l.KeyFile)
	if _, err := run(ctx, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kbootstrap-lab-"+l.Config.ID, "-f", l.KeyFile); err != nil {
		return fmt.Errorf("lab: client key: %w", err)
	}
	l.log.step(t, "client key %s created", l.KeyFile)
	return nil
}

// etcHosts is /etc/hosts for the nodes: every node by name.
func (l *Lab) etcHosts() string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	for _, n := range l.nodes {
		fmt.Fprintf(&b, "%s\t%s\n", n.Addresses[0], n.Name)
	}
	return b.String()
}

// writeFiles writes state.json, known_hosts and the inventory.
func (l *Lab) writeFiles() error {
	if err := l.writeState(); err != nil {
		return err
	}
	var kh strings.Builder
	for _, n := range l.nodes {
		pub, err := os.ReadFile(filepath.Join(l.nodeDir(n.Name), "ssh_host_ed25519_key.pub"))
		if err != nil {
			continue // never booted
		}
		f := strings.Fields(string(pub))
		if len(f) < 2 {
			return fmt.Errorf("lab: node %s: bad host key", n.Name)
		}
		for _, a := range n.Addresses {
			fmt.Fprintf(&kh, "%s %s %s\n", a, f[0], f[1])
		}
	}
	if err := writeFile(l.KnownHostsFile, []byte(kh.String()), 0o644); err != nil {
		return err
	}
	return writeFile(l.InventoryFile, []byte(l.inventory()), 0o600)
}

// inventory renders the nodes in kbootstrap's inventory format.
func (l *Lab) inventory() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by the kbootstrap lab %q (%s); rewritten by every lab up.\n", l.Config.ID, l.Config.Dir)
	fmt.Fprintf(&b, "name: %s\n", l.Config.ID)
	fmt.Fprintf(&b, "kubernetesVersion: %s\n", KubernetesVersion)
	nodes := append([]*nodeState(nil), l.nodes...)
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Index < nodes[j].Index })
	for _, n := range nodes {
		if n.Role == RoleLoadBalancer {
			fmt.Fprintf(&b, "controlPlaneEndpoint: %s:6443\n", n.Addresses[0])
			break
		}
	}
	fmt.Fprintf(&b, "ssh:\n  user: root\n  port: 22\n  keyFile: %s\n  knownHostsFile: %s\n",
		strconv.Quote(l.KeyFile), strconv.Quote(l.KnownHostsFile))
	b.WriteString("nodes:\n")
	for _, n := range nodes {
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    internalAddress: %s\n    role: %s\n",
			n.Name, n.Addresses[0], n.Addresses[0], n.Role)
	}
	return b.String()
}

// images is the directory of image archives next to the artifacts' bin directory
// (<artifacts>/../images), mounted read-only at /opt/kbootstrap/images in Kubernetes nodes, or "".
func (l *Lab) images() string {
	if l.artifacts == "" {
		return ""
	}
	if d := filepath.Join(filepath.Dir(l.artifacts), "images"); isDir(d) {
		return d
	}
	return ""
}

// findArtifacts picks the directory bind-mounted at /opt/kbootstrap/bin (see Config.ArtifactsDir).
func findArtifacts(cfg Config) string {
	if cfg.ArtifactsDir != "" {
		return cfg.ArtifactsDir
	}
	cands := []string{os.Getenv("KBOOTSTRAP_LAB_ARTIFACTS"), filepath.Join(cfg.Dir, "artifacts", "bin")}
	if root := RepoRoot(); root != "" {
		cands = append(cands, filepath.Join(root, ".lab", "artifacts", "bin"))
	}
	for _, c := range cands {
		if c != "" && isDir(c) {
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	return ""
}

// RepoRoot returns the kbootstrap repository root above the working directory (the directory whose
// go.mod declares module github.com/kbootstrap/kbootstrap), or "".
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == "github.com/kbootstrap/kbootstrap" {
					return dir
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// hostLimits are the host-wide inotify limits Kubernetes nodes need: every
// kubelet and containerd of every lab shares the host's per-user counts (the
// default 128 instances is exhausted by two 3-node clusters, and kubelets then
// fail with "inotify_init: too many open files"). kind documents the same.
var hostLimits = []struct {
	path string
	min  int
}{
	{"/proc/sys/fs/inotify/max_user_instances", 1024},
	{"/proc/sys/fs/inotify/max_user_watches", 524288},
}

// checkHostLimits refuses to boot Kubernetes nodes on a host whose limits are
// too low, naming the fix (make lab-host-limits), rather than changing host
// settings behind the user's back.
func checkHostLimits() error {
	for _, l := range hostLimits {
		b, err := os.ReadFile(l.path)
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("lab: %s: %w", l.path, err)
		}
		if v < l.min {
			name := strings.ReplaceAll(strings.TrimPrefix(l.path, "/proc/sys/"), "/", ".")
			return fmt.Errorf("lab: %s is %d; Kubernetes nodes need at least %d (kubelets share the host's inotify limits): run `make lab-host-limits` or `sysctl -w %s=%d`", name, v, l.min, name, l.min)
		}
	}
	return nil
}
