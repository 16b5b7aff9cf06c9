package e2e

// Lab tests of `kbootstrap etcd` (issue 4). A dedicated lab of three control
// planes runs a 3-member etcd started with the exact command of the etcd.yaml
// kubeadm wrote on each node (`kubeadm init phase etcd local`), and real
// kube-apiservers started from kubeadm's kube-apiserver.yaml: on cp1 (process
// source), on cp3 (process, with the manifest edited afterwards: a planted
// difference); cp2 has only the manifest. Run alone with
//   go test ./e2e -run 'TestEtcd' -v

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

var etcdSpec = labSpec{
	id: "etcd", subnet: "10.91.0.0/24", subnet2: "10.92.0.0/24", heavy: true,
	nodes: []lab.NodeSpec{{Name: "cp1", Role: "control-plane"}, {Name: "cp2", Role: "control-plane"}, {Name: "cp3", Role: "control-plane"}},
}

const (
	nodeBin       = "/opt/kbootstrap/bin"
	etcdPKI       = "/etc/kubernetes/pki"
	etcdctlPrefix = nodeBin + "/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=" + etcdPKI + "/etcd/ca.crt --cert=" + etcdPKI + "/etcd/healthcheck-client.crt --key=" + etcdPKI + "/etcd/healthcheck-client.key"
)

// etcdCluster is the etcd lab, set up once each time it comes up.
type etcdCluster struct {
	l    *lab.Lab
	inv  string
	addr map[string]string
	bin  string // upstream binaries on the host (etcdutl, etcd for restores)

	mu   sync.Mutex
	pids map[string]int // "cp1/etcd" -> pid inside the node
}

var (
	etcdC     *etcdCluster
	etcdSetup error
)

// hostArtifacts finds the upstream binaries on the host, or skips.
func hostArtifacts(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("KBOOTSTRAP_ARTIFACTS_BIN"), filepath.Join(repoRoot, ".lab", "artifacts", "bin"),
		"/var/cache/kbootstrap-lab/artifacts/k8s-v1.34.4-etcd-v3.6.5/bin"}
	for _, d := range cands {
		if d == "" {
			continue
		}
		ok := true
		for _, b := range []string{"etcd", "etcdctl", "etcdutl", "kubeadm", "kube-apiserver"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	t.Skip("etcd binaries not built: run make lab-artifacts")
	return ""
}

func etcdLab(t *testing.T) *etcdCluster {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	bin := hostArtifacts(t)
	if os.Getenv("KBOOTSTRAP_ARTIFACTS_BIN") == "" {
		os.Setenv("KBOOTSTRAP_ARTIFACTS_BIN", bin) // labFor mounts it at /opt/kbootstrap/bin
	}
	l := labFor(t, etcdSpec)
	if etcdC == nil || etcdC.l != l {
		// The first test to ask, or the lab came up again after it went
		// down (labSpec.heavy).
		c := &etcdCluster{l: l, inv: l.InventoryFile, addr: map[string]string{}, bin: bin, pids: map[string]int{}}
		for _, n := range l.Nodes {
			c.addr[n.Name] = n.Addresses[0]
		}
		etcdSetup = c.setup(t)
		etcdC = c
	}
	if etcdSetup != nil {
		t.Fatalf("etcd lab setup: %v", etcdSetup)
	}
	return etcdC
}

// sh runs a command as root in a node.
func (c *etcdCluster) sh(ctx context.Context, node, cmd string) (string, error) {
	return c.l.Sh(ctx, node, cmd)
}

func (c *etcdCluster) mustSh(t *testing.T, node, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := c.sh(ctx, node, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kubeadmConfig is the lab's kubeadm configuration for node, its
// controlPlaneEndpoint cp1.
func (c *etcdCluster) kubeadmConfig(node string) string {
	return lab.KubeadmInitConfig(node, c.addr[node], c.addr["cp1"]+":6443", "")
}

func (c *etcdCluster) initialCluster() string {
	var parts []string
	for _, n := range []string{"cp1", "cp2", "cp3"} {
		parts = append(parts, fmt.Sprintf("%s=https://%s:2380", n, c.addr[n]))
	}
	return strings.Join(parts, ",")
}

// setup writes kubeadm's certificates and manifests on the three nodes and
// starts etcd and kube-apiserver from them.
func (c *etcdCluster) setup(t *testing.T) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	nodes := []string{"cp1", "cp2", "cp3"}
	for _, n := range nodes {
		// A previous run may have left processes and state behind.
		if _, err := c.sh(ctx, n, `for d in /proc/[0-9]*; do c=$(cat $d/comm 2>/dev/null); case "$c" in etcd|kube-apiserver) kill -9 ${d#/proc/};; esac; done; rm -rf /etc/kubernetes /var/lib/etcd; true`); err != nil {
			return err
		}
		cfg := c.kubeadmConfig(n)
		if _, err := c.sh(ctx, n, "mkdir -p /root && cat > /root/kubeadm.yaml <<'EOF'\n"+cfg+"EOF\n"); err != nil {
			return err
		}
	}
	// cp1 makes the CAs; the others get copies, as `kubeadm join
	// --control-plane` would give them.
	if _, err := c.sh(ctx, "cp1", nodeBin+"/kubeadm init phase certs all --config /root/kubeadm.yaml"); err != nil {
		return err
	}
	shared := []string{"ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt", "etcd/ca.key"}
	for _, f := range shared {
		b64, err := c.sh(ctx, "cp1", "base64 -w0 "+etcdPKI+"/"+f)
		if err != nil {
			return err
		}
		for _, n := range nodes[1:] {
			p := etcdPKI + "/" + f
			if _, err := c.sh(ctx, n, fmt.Sprintf("mkdir -p %s && echo %s | base64 -d > %s && chmod 600 %s", filepath.Dir(p), b64, p, p)); err != nil {
				return err
			}
		}
	}
	for _, n := range nodes {
		if n != "cp1" {
			if _, err := c.sh(ctx, n, nodeBin+"/kubeadm init phase certs all --config /root/kubeadm.yaml"); err != nil {
				return err
			}
		}
		if _, err := c.sh(ctx, n, nodeBin+"/kubeadm init phase etcd local --config /root/kubeadm.yaml && "+nodeBin+"/kubeadm init phase control-plane apiserver --config /root/kubeadm.yaml"); err != nil {
			return err
		}
		// kubeadm's init manifest names only this member; a joined member's
		// manifest names them all (as `kubeadm join` writes it).
		if _, err := c.sh(ctx, n, fmt.Sprintf("sed -i 's#--initial-cluster=.*#--initial-cluster=%s#' /etc/kubernetes/manifests/etcd.yaml", c.initialCluster())); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := c.startFromManifest(ctx, n, "etcd", nil); err != nil {
			return err
		}
	}
	if err := c.waitHealthy(ctx, "cp1", 90*time.Second); err != nil {
		return err
	}
	for _, n := range []string{"cp1", "cp3"} {
		if err := c.startFromManifest(ctx, n, "kube-apiserver", nil); err != nil {
			return err
		}
	}
	// The planted difference: cp3's manifest edited after its API server
	// started (the kubelet has not applied it).
	if _, err := c.sh(ctx, "cp3", fmt.Sprintf("sed -i 's#--etcd-servers=https://127.0.0.1:2379#--etcd-servers=https://127.0.0.1:2379,https://%s:2379#' /etc/kubernetes/manifests/kube-apiserver.yaml", c.addr["cp3"])); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	for _, k := range []string{"cp1/kube-apiserver", "cp3/kube-apiserver"} {
		node, _, _ := strings.Cut(k, "/")
		if _, err := c.sh(ctx, node, fmt.Sprintf("kill -0 %d", c.pid(k))); err != nil {
			log, _ := c.sh(ctx, node, "tail -20 /var/log/kb-kube-apiserver.log")
			return fmt.Errorf("%s exited: %v\n%s", k, err, log)
		}
	}
	return nil
}

func (c *etcdCluster) pid(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pids[key]
}

// startFromManifest starts component on node with the exact command line of
// its static pod manifest (mutate may change it), detached, and records its
// pid.
func (c *etcdCluster) startFromManifest(ctx context.Context, node, component string, mutate func([]string) []string) error {
	b, err := c.sh(ctx, node, "cat /etc/kubernetes/manifests/"+component+".yaml")
	if err != nil {
		return err
	}
	argv := manifestCommand(b)
	if len(argv) == 0 {
		return fmt.Errorf("%s: no command in %s.yaml:\n%s", node, component, b)
	}
	if mutate != nil {
		argv = mutate(argv)
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := fmt.Sprintf("cd / && PATH=%s:$PATH setsid nohup %s >/var/log/kb-%s.log 2>&1 </dev/null & echo $!", nodeBin, strings.Join(q, " "), component)
	out, err := c.sh(ctx, node, cmd)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("%s: start %s: %q", node, component, out)
	}
	c.mu.Lock()
	c.pids[node+"/"+component] = pid
	c.mu.Unlock()
	return nil
}

// stop kills the process this test started and waits for it to be gone.
func (c *etcdCluster) stop(ctx context.Context, node, component string) error {
	pid := c.pid(node + "/" + component)
	if pid == 0 {
		return nil
	}
	_, err := c.sh(ctx, node, fmt.Sprintf("kill %d; for i in $(seq 100); do kill -0 %d 2>/dev/null || exit 0; sleep 0.1; done; kill -9 %d; sleep 0.2", pid, pid, pid))
	c.mu.Lock()
	delete(c.pids, node+"/"+component)
	c.mu.Unlock()
	return err
}

func (c *etcdCluster) restartEtcd(t *testing.T, node string, mutate func([]string) []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.stop(ctx, node, "etcd"); err != nil {
		t.Fatal(err)
	}
	if err := c.startFromManifest(ctx, node, "etcd", mutate); err != nil {
		t.Fatal(err)
	}
	if err := c.waitHealthy(ctx, node, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

func (c *etcdCluster) waitHealthy(ctx context.Context, node string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		// healthcheck-client works whether or not client-cert-auth is on.
		if _, err := c.sh(ctx, node, etcdctlPrefix+" endpoint health"); err == nil {
			return nil
		} else {
			last = err
		}
		time.Sleep(500 * time.Millisecond)
	}
	log, _ := c.sh(ctx, node, "tail -30 /var/log/kb-etcd.log")
	return fmt.Errorf("etcd on %s not healthy within %s: %v\n%s", node, within, last, log)
}

type flagsRecord struct {
	Node        string   `json:"node"`
	Source      string   `json:"source"`
	Endpoints   []string `json:"endpoints"`
	CACert      string   `json:"cacert"`
	Cert        string   `json:"cert"`
	Key         string   `json:"key"`
	Prefix      string   `json:"prefix"`
	PID         int      `json:"pid"`
	Differences []string `json:"differences"`
}

func TestEtcdFlags(t *testing.T) {
	c := etcdLab(t)
	stdout, _, code := kb(t, "-i", c.inv, "-o", "json", "etcd", "flags")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var recs []flagsRecord
	if err := json.Unmarshal([]byte(stdout), &recs); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	got := map[string]flagsRecord{}
	for _, r := range recs {
		got[r.Node] = r
	}
	want := flagsRecord{Endpoints: []string{"https://127.0.0.1:2379"}, CACert: etcdPKI + "/etcd/ca.crt",
		Cert: etcdPKI + "/apiserver-etcd-client.crt", Key: etcdPKI + "/apiserver-etcd-client.key", Prefix: "/registry"}
	check := func(node, source string, diff bool) {
		r, ok := got[node]
		if !ok {
			t.Errorf("%s missing", node)
			return
		}
		if r.Source != source || !slices.Equal(r.Endpoints, want.Endpoints) || r.CACert != want.CACert || r.Cert != want.Cert || r.Key != want.Key || r.Prefix != want.Prefix {
			t.Errorf("%s: got %+v", node, r)
		}
		if (len(r.Differences) > 0) != diff {
			t.Errorf("%s: differences %q, want some: %v", node, r.Differences, diff)
		}
	}
	check("cp1", "process", false)
	check("cp2", "manifest", false)
	check("cp3", "process", true)
	if r := got["cp1"]; r.PID != c.pid("cp1/kube-apiserver") {
		t.Errorf("cp1 pid %d, started %d", r.PID, c.pid("cp1/kube-apiserver"))
	}
	if d := strings.Join(got["cp3"].Differences, " "); !strings.Contains(d, "--etcd-servers") || !strings.Contains(d, c.addr["cp3"]) {
		t.Errorf("cp3 difference should name --etcd-servers and the added server: %q", d)
	}
	// Table mode prints the etcdctl equivalent, which works on the node.
	stdout, _, code = kb(t, "-i", c.inv, "--host", "cp1", "etcd", "flags")
	line := ""
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "cp1: etcdctl ") {
			line = strings.TrimPrefix(l, "cp1: ")
		}
	}
	if code != 0 || line == "" {
		t.Fatalf("no etcdctl line in the table:\n%s", stdout)
	}
	out := c.mustSh(t, "cp1", "PATH="+nodeBin+":$PATH "+line)
	if !strings.Contains(out, "cp2") {
		t.Errorf("the printed etcdctl command did not list members: %s", out)
	}
}

func TestEtcdMembers(t *testing.T) {
	c := etcdLab(t)
	stdout, _, code := kb(t, "-i", c.inv, "-o", "json", "etcd", "members")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var got []member
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	// etcdctl's own view, on the node; IDs are uint64 (decimal in JSON).
	raw := c.mustSh(t, "cp1", etcdctlPrefix+" member list -w json 2>/dev/null")
	var ref struct {
		Members []struct {
			ID         json.Number `json:"ID"`
			Name       string      `json:"name"`
			PeerURLs   []string    `json:"peerURLs"`
			ClientURLs []string    `json:"clientURLs"`
			IsLearner  bool        `json:"isLearner"`
		} `json:"members"`
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&ref); err != nil {
		t.Fatalf("etcdctl json: %v\n%s", err, raw)
	}
	var want []member
	for _, m := range ref.Members {
		id, err := strconv.ParseUint(m.ID.String(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, member{ID: strconv.FormatUint(id, 16), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	key := func(a, b member) int { return strings.Compare(a.ID, b.ID) }
	slices.SortFunc(got, key)
	slices.SortFunc(want, key)
	if len(want) != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("members differ from etcdctl's:\n got  %+v\n want %+v", got, want)
	}
	// Table mode: status per member, exactly one leader.
	stdout, _, code = kb(t, "-i", c.inv, "etcd", "members")
	if code != 0 || strings.Count(stdout, " true ") < 1 || !strings.Contains(stdout, "3.6.5") {
		t.Errorf("table without statuses:\n%s", stdout)
	}
}

// putData writes n values of size bytes under prefix (etcdctl reads each
// value from stdin).
func (c *etcdCluster) putData(t *testing.T, prefix string, n, size int) {
	t.Helper()
	c.mustSh(t, "cp1", fmt.Sprintf("head -c %d /dev/urandom > /root/value && for i in $(seq 1 %d); do %s put %s$i < /root/value >/dev/null || exit 1; done; rm /root/value", size, n, etcdctlPrefix, prefix))
}

func TestEtcdSnapshot(t *testing.T) {
	c := etcdLab(t)
	c.mustSh(t, "cp1", etcdctlPrefix+" put /kb/probe restored-value")
	dir := t.TempDir()
	file := filepath.Join(dir, "etcd.db")
	stdout, _, code := kb(t, "-i", c.inv, "-o", "json", "etcd", "snapshot", "save", file, "--keep", "2")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var res snapshotRecord
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != res.Size || res.Revision == 0 || len(res.SHA256) != 64 {
		t.Fatalf("saved file: %v %v, result %+v", fi, err, res)
	}
	if _, err := os.Stat(file + ".part"); !os.IsNotExist(err) {
		t.Errorf(".part left behind: %v", err)
	}
	// etcdutl accepts it and agrees with verify.
	ref := etcdutlStatus(t, c.bin, file)
	stdout, _, code = kb(t, "-i", c.inv, "-o", "json", "etcd", "snapshot", "verify", file)
	var v verifyRecord
	if code != 0 || json.Unmarshal([]byte(stdout), &v) != nil {
		t.Fatalf("verify: exit %d", code)
	}
	if v.Revision != ref.Revision || v.TotalKey != ref.TotalKey || v.Hash != ref.Hash || v.TotalSize != ref.TotalSize || v.Version != ref.Version {
		t.Errorf("verify %+v, etcdutl %+v", v, ref)
	}
	if v.Revision < res.Revision {
		t.Errorf("snapshot revision %d, header said %d", v.Revision, res.Revision)
	}
	// Restorable: restore, start etcd on it, read the key back.
	if got := restoreAndGet(t, c.bin, file, "/kb/probe"); got != "restored-value" {
		t.Errorf("restored etcd returned %q", got)
	}
	// --keep 2: a second save keeps the first as FILE.1.
	if _, _, code := kb(t, "-i", c.inv, "etcd", "snapshot", "save", file, "--keep", "2", "--node", "cp2"); code != 0 {
		t.Fatalf("second save: exit %d", code)
	}
	if _, err := os.Stat(file + ".1"); err != nil {
		t.Errorf("--keep 2: %v", err)
	}
	// A corrupted copy fails verify.
	b, _ := os.ReadFile(file)
	b[len(b)/2] ^= 0xff
	bad := filepath.Join(dir, "bad.db")
	os.WriteFile(bad, b, 0o600)
	if _, stderr, code := kb(t, "-i", c.inv, "etcd", "snapshot", "verify", bad); code != 2 || !strings.Contains(stderr, "sha256") {
		t.Errorf("corrupted snapshot: exit %d %s", code, stderr)
	}
}

type utlStatus struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

func etcdutlStatus(t *testing.T, bin, file string) utlStatus {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "etcdutl"), "snapshot", "status", file, "-w", "json").Output()
	if err != nil {
		t.Fatalf("etcdutl snapshot status: %v", err)
	}
	var s utlStatus
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("etcdutl json %s: %v", out, err)
	}
	return s
}

// freePorts returns n distinct free loopback ports: each listener stays
// open until all are chosen, so one port is never handed out twice.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// restoreAndGet restores file with etcdutl into a fresh data dir on the
// host, starts etcd on it (loopback, plain http) and reads key.
func restoreAndGet(t *testing.T, bin, file, key string) string {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := freePorts(t, 2)
	cport, pport := p[0], p[1]
	peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
	client := fmt.Sprintf("http://127.0.0.1:%d", cport)
	if out, err := exec.Command(filepath.Join(bin, "etcdutl"), "snapshot", "restore", file, "--data-dir", data,
		"--name", "restored", "--initial-cluster", "restored="+peer, "--initial-advertise-peer-urls", peer).CombinedOutput(); err != nil {
		t.Fatalf("etcdutl snapshot restore: %v\n%s", err, out)
	}
	srv := exec.Command(filepath.Join(bin, "etcd"), "--name", "restored", "--data-dir", data, "--listen-client-urls", client,
		"--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "restored="+peer)
	var logb bytes.Buffer
	srv.Stdout, srv.Stderr = &logb, &logb
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := exec.Command(filepath.Join(bin, "etcdctl"), "--endpoints", client, "--command-timeout", "2s", "get", key, "--print-value-only").Output()
		if err == nil {
			return strings.TrimSpace(string(out))
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("restored etcd did not answer:\n%s", logb.String())
	return ""
}

// interruptedSave runs a snapshot save and, once FILE.part holds over 8 MiB,
// calls interrupt; it returns the run's result.
func interruptedSave(t *testing.T, c *etcdCluster, file string, interrupt func(cmd *exec.Cmd)) result {
	t.Helper()
	cmd := exec.Command(kbBinary, "-i", c.inv, "etcd", "snapshot", "save", file)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	interrupted := false
	for !interrupted {
		select {
		case <-done:
			t.Fatalf("the snapshot finished before it could be interrupted (%s): make the database bigger\n%s", time.Since(start), errb.String())
		case <-time.After(2 * time.Millisecond):
		}
		if fi, err := os.Stat(file + ".part"); err == nil && fi.Size() > 8<<20 {
			interrupt(cmd)
			interrupted = true
		}
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("kbootstrap did not end within 60 s of the interruption")
	}
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	}
	t.Logf("interrupted save → exit %d in %s\n%s", r.code, r.took, r.stderr)
	return r
}

func TestEtcdSnapshotInterrupted(t *testing.T) {
	c := etcdLab(t)
	c.putData(t, "/kb/bulk/", 256, 1<<20) // ~256 MiB: the stream lasts long enough to cut
	dir := t.TempDir()

	t.Run("ssh connection killed", func(t *testing.T) {
		file := filepath.Join(dir, "killed.db")
		r := interruptedSave(t, c, file, func(*exec.Cmd) {
			// Kill the sshd processes serving connections from the host (ours).
			c.mustSh(t, "cp1", `ss -tnpH state established '( sport = :22 )' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | xargs -r kill -9`)
		})
		if r.code != 2 || !strings.Contains(r.stderr, "cp1") {
			t.Errorf("exit %d, stderr should name cp1: %s", r.code, r.stderr)
		}
		for _, p := range []string{file, file + ".part"} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s left behind: %v", p, err)
			}
		}
	})
	t.Run("interrupted by SIGINT", func(t *testing.T) {
		file := filepath.Join(dir, "sigint.db")
		r := interruptedSave(t, c, file, func(cmd *exec.Cmd) { cmd.Process.Signal(syscall.SIGINT) })
		if r.code == 0 {
			t.Error("exit 0 after SIGINT")
		}
		for _, p := range []string{file, file + ".part"} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s left behind: %v", p, err)
			}
		}
	})
	c.mustSh(t, "cp1", etcdctlPrefix+" del --prefix /kb/bulk/ >/dev/null && "+etcdctlPrefix+" compact $("+etcdctlPrefix+" endpoint status -w fields | awk -F': ' '/\"Revision\"/{print $2}') >/dev/null; true")
}

func TestEtcdSnapshotLocal(t *testing.T) {
	c := etcdLab(t)
	// The kbootstrap binary copied onto the node runs there with --local.
	args, err := c.l.ExecArgs("cp1", "sh", "-c", "cat > /usr/local/bin/kbootstrap && chmod 755 /usr/local/bin/kbootstrap")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.Open(kbBinary)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	cp := exec.Command(args[0], args[1:]...)
	cp.Stdin = bin
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copy kbootstrap to cp1: %v\n%s", err, out)
	}
	out := c.mustSh(t, "cp1", "rm -f /root/local.db* && kbootstrap -o json etcd snapshot save /root/local.db --local && stat -c %a /root/local.db && "+nodeBin+"/etcdutl snapshot status /root/local.db -w json")
	if !strings.Contains(out, `"node": "cp1"`) || !strings.Contains(out, "\n600\n") || !strings.Contains(out, `"totalKey"`) {
		t.Errorf("--local save on cp1:\n%s", out)
	}
}

type auditDoc struct {
	Findings []struct {
		Node, Check, File, Severity, Message string
	} `json:"findings"`
}

func audit(t *testing.T, c *etcdCluster, node string) (auditDoc, int) {
	t.Helper()
	stdout, _, code := kb(t, "-i", c.inv, "--host", node, "-o", "json", "etcd", "audit")
	var d auditDoc
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("audit JSON: %v", err)
	}
	return d, code
}

func (d auditDoc) severity(check string) []string {
	var out []string
	for _, f := range d.Findings {
		if f.Check == check {
			out = append(out, f.Severity)
		}
	}
	return out
}

func TestEtcdAudit(t *testing.T) {
	c := etcdLab(t)
	t.Run("kubeadm defaults are clean", func(t *testing.T) {
		d, code := audit(t, c, "cp1")
		for _, f := range d.Findings {
			if f.Severity != "ok" {
				t.Errorf("finding on kubeadm's defaults: %+v", f)
			}
		}
		if code != 0 {
			t.Errorf("exit %d", code)
		}
		for _, check := range []string{"cis-2.1", "cis-2.2", "cis-2.3", "cis-2.4", "cis-2.5", "cis-2.6", "cis-2.7",
			"cis-1.2.23", "cis-1.2.26", "etcd.client-urls-https", "etcd.metrics-loopback", "etcd.ca-not-cluster-ca",
			"probe.no-client-cert", "probe.cluster-ca-client-cert", "probe.plain-http", "probe.apiserver-client",
			"cis-1.1.11", "etcd.data-files", "etcd.backup-files"} {
			if len(d.severity(check)) == 0 {
				t.Errorf("check %s missing", check)
			}
		}
		// The four kubeadm certificates etcd accepts, server and peer included.
		var holders []string
		for _, f := range d.Findings {
			if f.Check == "access.client-cert" {
				holders = append(holders, f.File)
			}
		}
		slices.Sort(holders)
		if want := []string{"apiserver-etcd-client.crt", "etcd/healthcheck-client.crt", "etcd/peer.crt", "etcd/server.crt"}; !slices.Equal(holders, want) {
			t.Errorf("etcd client certificate holders %q, want %q", holders, want)
		}
	})
	t.Run("client-cert-auth off, no trusted CA, manifest unchanged", func(t *testing.T) {
		c.restartEtcd(t, "cp2", func(argv []string) []string {
			var out []string
			for _, a := range argv {
				switch {
				case a == "--client-cert-auth=true":
					out = append(out, "--client-cert-auth=false")
				case strings.HasPrefix(a, "--trusted-ca-file="):
				default:
					out = append(out, a)
				}
			}
			return out
		})
		defer c.restartEtcd(t, "cp2", nil)
		d, code := audit(t, c, "cp2")
		if code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
		for _, check := range []string{"cis-2.2", "cis-2.7", "probe.no-client-cert"} {
			if !slices.Contains(d.severity(check), "fail") {
				t.Errorf("%s: %v, want fail", check, d.severity(check))
			}
		}
		if !slices.Contains(d.severity("etcd.process-manifest-drift"), "warn") {
			t.Errorf("process/manifest drift not reported")
		}
	})
	t.Run("etcd's data and backups open to others", func(t *testing.T) {
		c.mustSh(t, "cp3", "chmod 755 /var/lib/etcd && mkdir -p /var/backups/etcd && touch /var/backups/etcd/snapshot.db && chmod 644 /var/backups/etcd/snapshot.db && chmod 644 /var/lib/etcd/member/snap/db")
		defer c.mustSh(t, "cp3", "chmod 700 /var/lib/etcd && chmod 600 /var/lib/etcd/member/snap/db && rm -rf /var/backups/etcd")
		d, code := audit(t, c, "cp3")
		if code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
		for _, check := range []string{"cis-1.1.11", "etcd.data-files", "etcd.backup-files"} {
			if !slices.Contains(d.severity(check), "fail") {
				t.Errorf("%s: %v, want fail", check, d.severity(check))
			}
		}
	})
	t.Run("auto-tls", func(t *testing.T) {
		c.restartEtcd(t, "cp2", func(argv []string) []string { return append(argv, "--auto-tls") })
		defer c.restartEtcd(t, "cp2", nil)
		d, code := audit(t, c, "cp2")
		if code != 2 || !slices.Contains(d.severity("cis-2.3"), "fail") {
			t.Errorf("exit %d, cis-2.3 %v", code, d.severity("cis-2.3"))
		}
	})
}

func TestEtcdDown(t *testing.T) {
	c := etcdLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.stop(ctx, "cp3", "etcd"); err != nil {
		t.Fatal(err)
	}
	defer c.restartEtcd(t, "cp3", nil)
	for _, args := range [][]string{{"etcd", "members"}, {"etcd", "snapshot", "save", filepath.Join(t.TempDir(), "x.db"), "--node", "cp3"}} {
		r := kbRun(t, nil, append([]string{"-i", c.inv, "--host", "cp3"}, args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "cp3") || r.took > 30*time.Second {
			t.Errorf("%v with etcd down: exit %d after %s (want 2 within 30 s naming cp3): %s", args, r.code, r.took, r.stderr)
		}
	}
}

// member, snapshotRecord and verifyRecord are the JSON documents of
// `etcd members`, `etcd snapshot save` and `etcd snapshot verify`.
type member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

type snapshotRecord struct {
	Node           string  `json:"node"`
	File           string  `json:"file"`
	Size           int64   `json:"size"`
	Revision       int64   `json:"revision"`
	SHA256         string  `json:"sha256"`
	Seconds        float64 `json:"durationSeconds"`
	BytesPerSecond float64 `json:"bytesPerSecond"`
}

type verifyRecord struct {
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

// manifestCommand extracts the container command of a kubeadm static pod
// manifest (kubeadm writes one "- item" per line under "command:").
func manifestCommand(manifest string) []string {
	var argv []string
	in := false
	for _, line := range strings.Split(manifest, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "- command:" || trimmed == "command:":
			in = true
		case in && strings.HasPrefix(trimmed, "- "):
			v := strings.TrimPrefix(trimmed, "- ")
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = v[1 : len(v)-1]
			}
			argv = append(argv, v)
		case in:
			return argv
		}
	}
	return argv
}
