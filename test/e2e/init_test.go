package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// initSpec is the lab of `kbootstrap init`: three control planes, two
// workers and a load balancer, VM-like (systemd, containerd), bare until the
// test prepares them.
var initSpec = labSpec{
	id: "init", subnet: "10.93.0.0/24", subnet2: "10.94.0.0/24", kubernetes: true, dedicated: true,
	nodes: []lab.NodeSpec{
		{Name: "lb1", Role: "loadbalancer"},
		{Name: "cp1", Role: "control-plane"}, {Name: "cp2", Role: "control-plane"}, {Name: "cp3", Role: "control-plane"},
		{Name: "worker1", Role: "worker"}, {Name: "worker2", Role: "worker"},
	},
}

// psWatch records the command line of every process of the watched nodes
// while a run goes on, and the secrets in their /etc/kbootstrap.
type psWatch struct {
	mu      sync.Mutex
	lines   map[string]bool // "node: command line", each once
	scans   int
	busy    time.Duration   // spent scanning
	parent  map[int]int     // of the processes listed at the last scan
	secrets map[string]bool // certificate keys and tokens seen in /etc/kbootstrap
	stop    chan struct{}
	done    sync.WaitGroup
}

// watchProcesses scans this machine's /proc every 100 ms: a node's processes
// (its containers' too) are the descendants of its PID 1, all visible from
// here. Reading /proc in-process costs milliseconds a scan; running ps in
// every node instead took most of a core and slowed the run it watched.
func watchProcesses(l *lab.Lab, nodes []string) *psWatch {
	w := &psWatch{stop: make(chan struct{}), lines: map[string]bool{}, secrets: map[string]bool{}, parent: map[int]int{}}
	inits := map[int]string{} // host PID of a node's PID 1 → node
	for _, n := range nodes {
		if nd, ok := l.Node(n); ok && nd.HostPID > 0 {
			inits[nd.HostPID] = n
		}
	}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		for {
			w.scan(inits)
			select {
			case <-w.stop:
				w.scan(inits)
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

// scan reads every process's parent and, for the nodes' own, its command
// line; and the kubeadm configurations kbootstrap writes (0600) under the
// nodes' /etc/kbootstrap while they exist.
func (w *psWatch) scan(inits map[int]string) {
	start := time.Now()
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := w.parent[pid]; ok {
			parent[pid] = pp // listed last time too: the same process
			continue
		}
		if pp, ok := readParent(pid); ok {
			parent[pid] = pp
		}
	}
	for pid, pp := range parent {
		if _, listed := parent[pp]; !listed && pp > 1 {
			// Its parent is gone: it was adopted since (a daemon's
			// double fork, a container's shim).
			if pp, ok := readParent(pid); ok {
				parent[pid] = pp
			}
		}
	}
	nodeOf := func(pid int) string {
		for range 64 {
			if n, ok := inits[pid]; ok {
				return n
			}
			if pid <= 1 {
				return ""
			}
			pid = parent[pid]
		}
		return ""
	}
	var found []string
	for pid := range parent {
		n := nodeOf(pid)
		if n == "" {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || len(cmdline) == 0 {
			continue
		}
		found = append(found, n+": "+string(bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
	}
	var secrets []string
	for hostPID := range inits {
		files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/root/etc/kbootstrap/*.yaml", hostPID))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, m := range secretRE.FindAllStringSubmatch(string(b), -1) {
				secrets = append(secrets, m[2])
			}
		}
	}
	w.parent = parent
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scans++
	w.busy += time.Since(start)
	for _, s := range found {
		w.lines[s] = true
	}
	for _, s := range secrets {
		w.secrets[s] = true
	}
}

// readParent reads a process's parent from /proc/PID/stat.
func readParent(pid int) (int, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false // gone
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// Stop ends the watch: the command lines seen, one a line, and the secrets.
func (w *psWatch) Stop() (procs string, secrets []string) {
	close(w.stop)
	w.done.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.secrets {
		secrets = append(secrets, s)
	}
	lines := make([]string, 0, len(w.lines))
	for s := range w.lines {
		lines = append(lines, s)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n"), secrets
}

// Scans is how many times the process table was read, and the time that took.
func (w *psWatch) Scans() (int, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.scans, w.busy
}

var (
	tokenRE = regexp.MustCompile(`\b[a-z0-9]{6}\.[a-z0-9]{16}\b`)
	// secretRE finds the certificate key and tokens in a kubeadm configuration.
	secretRE = regexp.MustCompile(`(certificateKey|token): "?([0-9a-f]{64}|[a-z0-9]{6}\.[a-z0-9]{16})"?`)
)

// checkNoSecrets fails when one of the known secrets (certificate keys and
// tokens), or anything shaped like a bootstrap token, shows in text, or
// --certificate-key is followed by anything but [REDACTED].
func checkNoSecrets(t *testing.T, what, text string, known []string) {
	t.Helper()
	for _, sec := range known {
		if strings.Contains(text, sec) {
			t.Errorf("%s: holds a secret of the run (%s…)", what, sec[:6])
		}
	}
	if m := tokenRE.FindString(text); m != "" {
		t.Errorf("%s: holds something shaped like a bootstrap token (%s…)", what, m[:6])
	}
	if i := strings.Index(text, "--certificate-key"); i >= 0 && !strings.HasPrefix(strings.TrimSpace(text[i+len("--certificate-key"):]), "[REDACTED]") {
		t.Errorf("%s: --certificate-key with a value", what)
	}
	if strings.Contains(text, "certificateKey:") || strings.Contains(text, "token-secret") {
		t.Errorf("%s: holds a kubeadm configuration or token Secret", what)
	}
}

// hostKubectl runs the artifacts' kubectl on this machine with kubeconfig.
func hostKubectl(kubeconfig string, args ...string) (string, error) {
	bin := filepath.Join(artifactsBin(), "kubectl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig, "--request-timeout=10s"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestInit forms an HA cluster from bare nodes with `kbootstrap init` (3
// control planes behind lb1, 1 worker), checks it (Nodes Ready, 3 etcd
// members, no secret in output, log or any node's process list), runs init
// again (nothing changes), joins worker2 added to the inventory with
// `kbootstrap join`, checks that a pod on worker1 reaches a pod on worker2,
// and that the API stays reachable through lb1 with cp1 stopped.
//
//	make lab-artifacts && cd test && go test -count=1 -v -run TestInit ./e2e/
func TestInit(t *testing.T) {
	if artifactsBin() == "" {
		t.Skip("the upstream artifacts are missing: make lab-artifacts")
	}
	l := labFor(t, initSpec)
	dir := t.TempDir()
	all := []string{"lb1", "cp1", "cp2", "cp3", "worker1", "worker2"}
	waitSystemd(t, l, all...)
	full := initInventory(t, l, dir, all...)
	// The first four nodes are formed with the network of earlier
	// kbootstraps, host-gw; the join of worker2 with the default inventory
	// converges them to kube-router.
	first := kubernetesInventory(t, l, dir, "kbootstrap-host-gw.yaml", "init", "network: {plugin: host-gw}\n", "lb1", "cp1", "cp2", "cp3", "worker1")

	// Bare nodes, prepared as a user would: the air-gapped prepare-node.
	r := prepareNodes(t, full)
	t.Logf("timing: prepare-node of 5 nodes %s", r.took.Round(time.Second))

	// (a) init, with every node's process list watched.
	kubeconfig := filepath.Join(dir, "init.kubeconfig")
	ps := watchProcesses(l, all)
	r = kbRun(t, nil, "-i", first, "-v", "init", "--kubeconfig-out", kubeconfig)
	procs, seen := ps.Stop()
	if r.code != 0 {
		logInitFailure(t, l, []string{"lb1"}, []string{"cp1", "cp2", "cp3"})
		t.Fatalf("init: exit %d", r.code)
	}
	t.Logf("timing: init of 3 control planes + 1 worker %s", r.took.Round(time.Second))
	for _, want := range []string{"✓ Initializing control plane cp1", "✓ Joining control plane cp2", "✓ Joining control plane cp3", "✓ Joining worker worker1", "[REDACTED]"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("init output lacks %q", want)
		}
	}
	if fi, err := os.Stat(kubeconfig); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %s: %v %v", kubeconfig, fi, err)
	}
	lb, _ := l.Node("lb1")
	if b, _ := os.ReadFile(kubeconfig); !strings.Contains(string(b), "server: https://"+lb.Addresses[0]+":6443") {
		t.Errorf("the kubeconfig does not point at lb1:\n%s", b)
	}
	ready := func(n int) func() error {
		return func() error {
			out, err := hostKubectl(kubeconfig, "get", "nodes", "--no-headers")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			c := 0
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[1] == "Ready" {
					c++
				}
			}
			if c != n {
				return fmt.Errorf("%d Ready nodes, want %d:\n%s", c, n, out)
			}
			return nil
		}
	}
	waitUntil(t, "4 Nodes Ready through lb1", 30*time.Second, ready(4))
	members := func() []etcdMemberJSON { return initEtcdMembers(t, first, kubeconfig) }
	if ms := members(); len(ms) != 3 {
		t.Errorf("%d etcd members, want 3: %+v", len(ms), ms)
	} else {
		for _, m := range ms {
			if m.IsLearner || len(m.ClientURLs) == 0 || m.Name == "" {
				t.Errorf("etcd member not started: %+v", m)
			}
		}
	}
	tokens := tokenRE.FindAllString(labExecIn(t, l, "cp1", "kubeadm token list -o jsonpath='{.token}{\"\\n\"}' 2>/dev/null || kubeadm token list"), -1)
	if len(tokens) < 2 {
		t.Errorf("kubeadm token list shows %d tokens, want the init token and the join tokens", len(tokens))
	}
	keys := 0
	for _, s := range seen {
		if len(s) == 64 {
			keys++
		}
	}
	if keys == 0 || len(seen) < 3 {
		t.Errorf("saw %d secrets (%d certificate keys) in /etc/kbootstrap during init: the check below proves little", len(seen), keys)
	}
	known := append(tokens, seen...)
	checkNoSecrets(t, "init stdout", r.stdout, known)
	checkNoSecrets(t, "init stderr (log)", r.stderr, known)
	checkNoSecrets(t, "process lists of the nodes during init", procs, known)
	scans, busy := ps.Scans()
	t.Logf("no certificate key or token (%d known: %d certificate keys, %d tokens) in init's output, its log or the %d command lines of the nodes' processes (%d scans of /proc, %s in all)", len(known), keys, len(known)-keys, strings.Count(procs, "\n")+1, scans, busy.Round(time.Millisecond))
	for _, n := range []string{"cp1", "cp2", "cp3", "worker1"} {
		if out := labExecIn(t, l, n, "ls -A /etc/kbootstrap 2>/dev/null; true"); strings.TrimSpace(out) != "" {
			t.Errorf("%s: /etc/kbootstrap still holds %s", n, out)
		}
	}

	// (b) init again changes nothing; worker2 added to the inventory is joined alone.
	r = kbRun(t, nil, "-i", first, "init", "--kubeconfig-out", kubeconfig)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing changed") {
		t.Errorf("init again: exit %d, no \"nothing changed\"", r.code)
	}
	t.Logf("timing: init again %s", r.took.Round(100*time.Millisecond))
	// join-command: for a human, with the secrets the user asked for.
	r = kbRun(t, nil, "-i", first, "join-command")
	joinRE := regexp.MustCompile(`^kubeadm join ` + regexp.QuoteMeta(lb.Addresses[0]) + `:6443 --token [a-z0-9]{6}\.[a-z0-9]{16} --discovery-token-ca-cert-hash sha256:[0-9a-f]{64}`)
	if r.code != 0 || !joinRE.MatchString(r.stdout) || !strings.Contains(r.stderr, "valid for 24h") {
		t.Errorf("join-command: exit %d", r.code)
	}
	r = kbRun(t, nil, "-i", first, "join-command", "--control-plane")
	if r.code != 0 || !joinRE.MatchString(r.stdout) || !regexp.MustCompile(`--control-plane --certificate-key [0-9a-f]{64}\n$`).MatchString(r.stdout) || !strings.Contains(r.stderr, "deleted after 2h") {
		t.Errorf("join-command --control-plane: exit %d", r.code)
	}
	r = kbRun(t, nil, "-i", full, "join", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "worker2: kubeadm join") || strings.Contains(r.stdout, "cp2: kubeadm join") {
		t.Errorf("join --dry-run: exit %d, plan not only worker2", r.code)
	}
	if !strings.Contains(labExecIn(t, l, "cp1", "iptables-save -t nat"), "kbootstrap-pod-masquerade") {
		t.Errorf("host-gw's masquerade rule is missing on cp1")
	}
	r = kbRun(t, nil, "-i", full, "join", "--kubeconfig-out", kubeconfig)
	if r.code != 0 || !strings.Contains(r.stdout, "✓ Joining worker worker2") || strings.Contains(r.stdout, "Joining control plane") || strings.Contains(r.stdout, "Joining worker worker1") {
		t.Fatalf("join of worker2: exit %d", r.code)
	}
	t.Logf("timing: join of worker2, the network converged from host-gw to kube-router, %s", r.took.Round(time.Second))
	waitUntil(t, "5 Nodes Ready", 30*time.Second, ready(5))
	// host-gw's bridge, configuration and masquerade rule gone from the
	// four nodes, its pods (CoreDNS) recreated on kube-router's bridge.
	for _, n := range []string{"cp1", "cp2", "cp3", "worker1"} {
		if !strings.Contains(r.stdout, "✓ Pod network on "+n+": CNI ") || !strings.Contains(r.stdout, "host-gw's cni and masquerade removed") {
			t.Errorf("join: %s not converged from host-gw to kube-router", n)
		}
		if out := labExecIn(t, l, n, "ls /etc/cni/net.d; ip -br link show type bridge; iptables-save -t nat | grep -c kbootstrap-pod-masquerade; true"); strings.Contains(out, "10-kbootstrap") || strings.Contains(out, "cni0") || !strings.Contains(out, "kube-bridge") || !strings.HasSuffix(strings.TrimSpace(out), "0") {
			t.Errorf("%s after the move to kube-router: %s", n, out)
		}
		// Pod to pod is never masqueraded: kbootstrap's rule comes before
		// kube-router's masquerade.
		out := labExecIn(t, l, n, "iptables -t nat -S POSTROUTING")
		if i, j := strings.Index(out, "kbootstrap-pod-no-nat -j RETURN"), strings.Index(out, "kube-router-pod-subnets"); i < 0 || (j >= 0 && j < i) {
			t.Errorf("%s: kbootstrap's pod-to-pod RETURN is missing or after kube-router's masquerade:\n%s", n, out)
		}
	}
	if !strings.Contains(r.stdout, "of host-gw's bridge recreated on kube-router's") {
		t.Errorf("join: no pod of host-gw's bridge recreated")
	}
	waitUntil(t, "kube-system pods running again", 2*time.Minute, func() error {
		out, err := hostKubectl(kubeconfig, "-n", "kube-system", "get", "pods", "--no-headers")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[2] != "Running" {
				return fmt.Errorf("not all running:\n%s", out)
			}
			if ready, want, _ := strings.Cut(f[1], "/"); ready != want {
				return fmt.Errorf("not all ready:\n%s", out)
			}
		}
		return nil
	})

	// (c) a pod on worker1 reaches a pod on worker2: CoreDNS on worker1
	// forwards to CoreDNS on worker2, whose whoami answers with the address
	// it saw: the pod on worker1's, not a node's.
	manifest := `apiVersion: v1
kind: ConfigMap
metadata: {name: pod2pod}
data:
  server: ".:53 {\n  whoami\n}\n"
---
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  nodeName: worker2
  containers:
  - {name: dns, image: registry.k8s.io/coredns/coredns:v1.12.1, imagePullPolicy: Never, args: ["-conf", "/etc/c/server"], volumeMounts: [{name: c, mountPath: /etc/c}]}
  volumes: [{name: c, configMap: {name: pod2pod}}]
`
	if out, err := hostKubectlStdin(kubeconfig, manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var serverIP string
	waitUntil(t, "server pod on worker2 running", 2*time.Minute, func() error {
		out, err := hostKubectl(kubeconfig, "get", "pod", "server", "-o", "jsonpath={.status.phase} {.status.podIP}")
		if f := strings.Fields(out); err == nil && len(f) == 2 && f[0] == "Running" {
			serverIP = f[1]
			return nil
		}
		return fmt.Errorf("%v: %s", err, out)
	})
	client := fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: pod2pod-client}
data:
  client: ".:53 {\n  forward . %s\n}\n"
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: worker1
  containers:
  - {name: dns, image: registry.k8s.io/coredns/coredns:v1.12.1, imagePullPolicy: Never, args: ["-conf", "/etc/c/client"], volumeMounts: [{name: c, mountPath: /etc/c}]}
  volumes: [{name: c, configMap: {name: pod2pod-client}}]
`, serverIP)
	if out, err := hostKubectlStdin(kubeconfig, client, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var clientIP string
	waitUntil(t, "client pod on worker1 running", 2*time.Minute, func() error {
		out, err := hostKubectl(kubeconfig, "get", "pod", "client", "-o", "jsonpath={.status.phase} {.status.podIP}")
		if f := strings.Fields(out); err == nil && len(f) == 2 && f[0] == "Running" {
			clientIP = f[1]
			return nil
		}
		return fmt.Errorf("%v: %s", err, out)
	})
	// whoami answers with the address it saw in the additional section (dig
	// would print the queried server's address, clientIP, anyway elsewhere).
	waitUntil(t, "the pod on worker1 reaches the pod on worker2 with its own address", time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := l.Exec(ctx, "worker1", "dig", "+time=2", "+tries=1", "+noall", "+additional", "@"+clientIP, "whoami.example.", "A")
		f := strings.Fields(string(out))
		if err != nil || len(f) < 5 || f[3] != "A" || f[4] != clientIP {
			return fmt.Errorf("whoami on worker2 saw %q, want the pod on worker1 (%s), not a node: %v", out, clientIP, err)
		}
		return nil
	})
	t.Logf("pod %s on worker1 reached pod %s on worker2 (whoami saw %s)", clientIP, serverIP, clientIP)
	if out, err := hostKubectl(kubeconfig, "delete", "pod", "server", "client", "--grace-period=1"); err != nil {
		t.Errorf("%v: %s", err, out)
	}

	// (g) verify on the 3+2 cluster, and the faults it must find; policies
	// enforced; a worker's reboot.
	testVerify(t, full, kubeconfig)
	testPolicyEnforced(t, kubeconfig)
	testNetworkFaults(t, l, full, kubeconfig)
	testReboot(t, l, full)

	// (e) the kubeadm-certs Secret deleted before a control-plane join: cp2
	// and cp3 reset, then joined again by one `join`; the Secret is deleted
	// while cp2 joins (once its etcd member exists: its certificates are
	// downloaded by then), so cp3's join finds it gone and kbootstrap uploads
	// the certificates again with the same key.
	for _, n := range []string{"cp3", "cp2"} {
		if r := kbRun(t, nil, "-i", full, "--host", n, "reset", "--yes"); r.code != 0 {
			t.Fatalf("reset %s: exit %d", n, r.code)
		}
	}
	if ms := members(); len(ms) != 1 {
		t.Fatalf("after resetting cp2 and cp3: %d etcd members, want 1: %+v", len(ms), ms)
	}
	// reset removes kube-router's bridge, rules, sets and routes.
	if out := labExecIn(t, l, "cp3", "ip -br link show type bridge; iptables-save | grep -c kube-router; ipset list -n; ip route show proto 17; true"); strings.TrimSpace(out) != "0" {
		t.Errorf("kube-router's leftovers on cp3 after its reset:\n%s", out)
	}
	cp2, _ := l.Node("cp2")
	cp3, _ := l.Node("cp3")
	deleted := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			if hasPeer(initEtcdMembersQuiet(kubeconfig), cp2.Addresses[0]) {
				out, err := hostKubectl(kubeconfig, "-n", "kube-system", "delete", "secret", "kubeadm-certs")
				if err != nil {
					err = fmt.Errorf("%v: %s", err, out)
				}
				deleted <- err
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		deleted <- fmt.Errorf("cp2's etcd member never showed up")
	}()
	r = kbRun(t, nil, "-i", full, "join", "--kubeconfig-out", kubeconfig)
	if err := <-deleted; err != nil {
		t.Fatalf("deleting kubeadm-certs during cp2's join: %v", err)
	}
	if r.code != 0 || !strings.Contains(r.stdout, "✓ Joining control plane cp3") || !strings.Contains(r.stdout, "Secret is gone") {
		t.Fatalf("join of cp2 and cp3 with kubeadm-certs deleted in between: exit %d", r.code)
	}
	if ms := members(); len(ms) != 3 {
		t.Fatalf("after rejoining cp2 and cp3: %d etcd members, want 3", len(ms))
	}
	t.Logf("timing: join of cp2 and cp3 (certificates uploaded again in between) %s", r.took.Round(time.Second))

	// (f) a control plane partitioned mid-join: its etcd member is removed
	// and the error says so.
	if r := kbRun(t, nil, "-i", full, "--host", "cp3", "reset", "--yes"); r.code != 0 {
		t.Fatalf("reset cp3: exit %d", r.code)
	}
	partitioned := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			if hasPeer(initEtcdMembersQuiet(kubeconfig), cp3.Addresses[0]) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				partitioned <- l.Partition(ctx, "cp3")
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		partitioned <- fmt.Errorf("cp3's etcd member never showed up")
	}()
	r = kbRun(t, nil, "-i", full, "join")
	if err := <-partitioned; err != nil {
		t.Fatal(err)
	}
	if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "node cp3") || !strings.Contains(r.stdout+r.stderr, "removed it") {
		t.Errorf("join of cp3 partitioned mid-join: exit %d, want 2 and an error naming cp3 and the removed etcd member", r.code)
	}
	if ms := members(); len(ms) != 2 || hasPeer(ms, cp3.Addresses[0]) {
		t.Errorf("after the failed join of cp3: etcd members %+v, want cp1 and cp2 only", ms)
	}
	checkNoSecrets(t, "failed join output", r.stdout+r.stderr, nil)
	ctx0, cancel0 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel0()
	if err := l.Heal(ctx0, "cp3"); err != nil {
		t.Fatal(err)
	}
	// cp3 back: the kubeadm join left running there stopped, reset, joined.
	labExecIn(t, l, "cp3", "for p in $(pgrep -x kubeadm); do kill $p; done; true")
	if r := kbRun(t, nil, "-i", full, "--host", "cp3", "reset", "--yes"); r.code != 0 {
		t.Fatalf("reset cp3 after the partition: exit %d", r.code)
	}
	if r := kbRun(t, nil, "-i", full, "join", "--kubeconfig-out", kubeconfig); r.code != 0 {
		t.Fatalf("join of cp3 after the partition: exit %d", r.code)
	}
	if ms := members(); len(ms) != 3 {
		t.Fatalf("after rejoining cp3: %d etcd members, want 3", len(ms))
	}

	// (d) with cp1 stopped, the API answers through lb1.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := l.Stop(ctx, "cp1"); err != nil {
		t.Fatal(err)
	}
	st := time.Now()
	waitUntil(t, "API through lb1 with cp1 stopped", time.Minute, func() error {
		for range 3 {
			if out, err := hostKubectl(kubeconfig, "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
				return fmt.Errorf("%v: %s", err, out)
			}
		}
		return nil
	})
	t.Logf("timing: API answering 3 times in a row through lb1 %s after cp1 stopped", time.Since(st).Round(100*time.Millisecond))
	if err := l.Start(ctx, "cp1"); err != nil {
		t.Fatal(err)
	}
}

func hostKubectlStdin(kubeconfig, stdin string, args ...string) (string, error) {
	bin := filepath.Join(artifactsBin(), "kubectl")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// etcdMemberJSON is a member of `etcdctl member list -w json`.
type etcdMemberJSON struct {
	ID         uint64   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// initEtcdMembersQuiet lists etcd's members with etcdctl in cp1's etcd pod
// (nil when it cannot).
func initEtcdMembersQuiet(kubeconfig string) []etcdMemberJSON {
	ms, _ := initEtcdMembersErr(kubeconfig)
	return ms
}

func initEtcdMembersErr(kubeconfig string) ([]etcdMemberJSON, error) {
	out, err := hostKubectl(kubeconfig, "-n", "kube-system", "exec", "etcd-cp1", "--", "etcdctl", "--endpoints", "https://127.0.0.1:2379",
		"--cacert", "/etc/kubernetes/pki/etcd/ca.crt", "--cert", "/etc/kubernetes/pki/etcd/server.crt", "--key", "/etc/kubernetes/pki/etcd/server.key",
		"member", "list", "-w", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var l struct {
		Members []etcdMemberJSON `json:"members"`
	}
	if i := strings.Index(out, "{"); i >= 0 {
		out = out[i:]
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	return l.Members, nil
}

// initEtcdMembers lists etcd's members: `kbootstrap etcd members` when it
// is implemented, else etcdctl in cp1's etcd pod.
func initEtcdMembers(t *testing.T, inv, kubeconfig string) []etcdMemberJSON {
	t.Helper()
	r := kbRun(t, nil, "-i", inv, "-o", "json", "etcd", "members")
	if r.code == 0 {
		var ms []struct {
			ID         string   `json:"id"`
			Name       string   `json:"name"`
			PeerURLs   []string `json:"peerURLs"`
			ClientURLs []string `json:"clientURLs"`
			IsLearner  bool     `json:"isLearner"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &ms); err == nil {
			var out []etcdMemberJSON
			for _, m := range ms {
				out = append(out, etcdMemberJSON{Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
			}
			return out
		}
	}
	var ms []etcdMemberJSON
	waitUntil(t, "etcdctl member list in etcd-cp1", time.Minute, func() (err error) {
		ms, err = initEtcdMembersErr(kubeconfig)
		return err
	})
	return ms
}

func hasPeer(ms []etcdMemberJSON, ip string) bool {
	for _, m := range ms {
		if strings.Contains(strings.Join(m.PeerURLs, ","), "//"+ip+":") {
			return true
		}
	}
	return false
}

// logInitFailure logs what explains a failed init: haproxy's log on each
// load balancer, the containers and the last lines of the API server's and
// etcd's logs on each control plane.
func logInitFailure(t *testing.T, l *lab.Lab, lbs, cps []string) {
	t.Helper()
	run := func(n, cmd string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := l.Exec(ctx, n, "sh", "-c", cmd)
		t.Logf("%s: %s (%v):\n%s", n, cmd, err, out)
	}
	for _, n := range lbs {
		run(n, "journalctl -u haproxy --no-pager -n 40 2>&1")
	}
	for _, n := range cps {
		run(n, "crictl ps -a 2>&1")
		for _, c := range []string{"kube-apiserver", "etcd"} {
			run(n, "crictl logs --tail 40 $(crictl ps -a --name '^"+c+"$' -q | head -1) 2>&1")
		}
	}
}
