package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/kbootstrap/kbootstrap/backup"
	"github.com/kbootstrap/kbootstrap/test/lab"
)

var restoreSpec = labSpec{
	id: "rstor", subnet: "10.104.0.0/24", subnet2: "10.105.0.0/24", kubernetes: true, dedicated: true,
	nodes: []lab.NodeSpec{
		{Name: "lb1", Role: "loadbalancer"},
		{Name: "cp1", Role: "control-plane"}, {Name: "cp2", Role: "control-plane"}, {Name: "cp3", Role: "control-plane"},
	},
}

// probeDeployment runs on the control planes (no workers here): a pause
// pod tolerating their taint.
const probeDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: restore-probe, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: restore-probe}}
  template:
    metadata: {labels: {app: restore-probe}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      terminationGracePeriodSeconds: 1
      containers: [{name: pause, image: %s}]
`

// TestRestore: backup and restore of a 3-control-plane cluster behind lb1
// formed by init. A bundle (encrypted, and a plain one); a damaged bundle
// and one of another CA refused before any node is touched; the cluster
// made to lose quorum (etcd's data wiped on cp2 and cp3); `restore`
// interrupted by SIGTERM after the data directories moved, then run again
// to completion: the objects of the backup back, the later ones gone, 3
// healthy members, a watch opened before told to list again (410), the
// controllers at work; then the same loss restored from cp1's own member
// with no bundle.
//
//	make lab-artifacts && cd test && go test -count=1 -v -run TestRestore ./e2e/
func TestRestore(t *testing.T) {
	if artifactsBin() == "" {
		t.Skip("the upstream artifacts are missing: make lab-artifacts")
	}
	start := time.Now()
	l, inv, kubeconfig, cs := restoreCluster(t, restoreSpec)
	dir := t.TempDir()
	cps := []string{"cp1", "cp2", "cp3"}
	t.Logf("timing: cluster formed %s after the test started", time.Since(start).Round(time.Second))
	k := func(args ...string) string {
		t.Helper()
		out, err := hostKubectl(kubeconfig, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	ctx := context.Background()

	// What the backup holds.
	k("create", "configmap", "before", "--from-literal=k=v1")
	k("create", "secret", "generic", "before-secret", "--from-literal=password=in-the-backup")
	pause := strings.TrimSpace(labExecIn(t, l, "cp1", `grep -o 'sandbox_image = "[^"]*"\|sandbox = "[^"]*"' /etc/containerd/config.toml | head -1 | cut -d'"' -f2`))
	if pause == "" {
		t.Fatal("no pause image in cp1's containerd config")
	}
	if out, err := hostKubectlStdin(kubeconfig, fmt.Sprintf(probeDeployment, pause), "apply", "-f", "-"); err != nil {
		t.Fatalf("apply the probe Deployment: %v\n%s", err, out)
	}

	// Bundles: encrypted with a passphrase, and plain.
	const passphrase = "correct horse battery staple"
	pf := writeFile(t, dir, "passphrase", passphrase+"\n", 0o600)
	wrong := writeFile(t, dir, "wrong-passphrase", "not it\n", 0o600)
	enc := filepath.Join(dir, "rstor.bundle")
	plain := filepath.Join(dir, "plain.bundle")
	r := kbRun(t, nil, "-i", inv, "backup", enc, "--passphrase-file", pf)
	if r.code != 0 {
		t.Fatalf("backup: exit %d", r.code)
	}
	if strings.Contains(r.stdout+r.stderr, passphrase) {
		t.Error("backup's output shows the passphrase")
	}
	raw, err := os.ReadFile(enc)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(enc); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", enc, fi.Mode().Perm())
	}
	if bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Error("the encrypted bundle holds a PRIVATE KEY block in the clear")
	}
	if r = kbRun(t, nil, "-i", inv, "backup", "verify", enc, "--passphrase-file", wrong); r.code == 0 || !strings.Contains(r.stderr, "passphrase") {
		t.Errorf("backup verify with a wrong passphrase: exit %d, want an error naming the passphrase\n%s", r.code, r.stderr)
	}
	if r = kbRun(t, nil, "-i", inv, "backup", "verify", enc, "--passphrase-file", pf); r.code != 0 {
		t.Errorf("backup verify: exit %d", r.code)
	}
	if r = kbRun(t, nil, "-i", inv, "backup", plain); r.code != 0 {
		t.Fatalf("backup (plain): exit %d", r.code)
	}

	// Bundles from a timer on the control planes, encrypted to a recipient
	// whose identity stays on this machine.
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	identity := writeFile(t, dir, "identity", id.String()+"\n", 0o600)
	if r = kbRun(t, nil, "-i", inv, "backup", "schedule", "--keep", "2", "--randomized-delay", "0", "--recipient", id.Recipient().String()); r.code != 0 {
		t.Fatalf("backup schedule: exit %d", r.code)
	}
	mustSh(t, l, "cp2", "systemctl start kbootstrap-backup.service")
	if out := mustSh(t, l, "cp2", "stat -c %a /var/backups/kbootstrap/rstor.bundle; grep -c 'PRIVATE KEY' /var/backups/kbootstrap/rstor.bundle || true"); strings.TrimSpace(out) != "600\n0" {
		t.Errorf("cp2's timer bundle: mode and PRIVATE KEY blocks:\n%s", out)
	}
	timed, err := base64.StdEncoding.DecodeString(mustSh(t, l, "cp2", "base64 -w0 /var/backups/kbootstrap/rstor.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	timedFile := filepath.Join(dir, "timed.bundle")
	if err := os.WriteFile(timedFile, timed, 0o600); err != nil {
		t.Fatal(err)
	}
	if r = kbRun(t, nil, "-i", inv, "backup", "verify", timedFile, "--identity", identity); r.code != 0 || !strings.Contains(r.stdout, "cluster    rstor") {
		t.Errorf("backup verify of cp2's timer bundle: exit %d\n%s", r.code, r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, id.String()) {
		t.Error("backup verify's output shows the identity")
	}

	// Refused before any node is touched: a flipped byte, another CA.
	flipped := filepath.Join(dir, "flipped.bundle")
	b, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x01
	if err := os.WriteFile(flipped, b, 0o600); err != nil {
		t.Fatal(err)
	}
	other := otherCABundle(t, plain, filepath.Join(dir, "other-ca.bundle"))
	untouched := func(when string) {
		t.Helper()
		for _, cp := range cps {
			out := labExecIn(t, l, cp, `ls /etc/kubernetes/manifests; ls -d /var/lib/etcd/member.kbootstrap-* /var/lib/etcd/.kbootstrap-* 2>/dev/null; ls /etc/kubernetes/kbootstrap-restore 2>/dev/null; true`)
			if out != "etcd.yaml\nkube-apiserver.yaml\nkube-controller-manager.yaml\nkube-scheduler.yaml\n" {
				t.Errorf("%s after %s: manifests and etcd directories:\n%s", cp, when, out)
			}
		}
	}
	for _, c := range []struct{ file, want string }{
		{flipped, "damaged"},
		{other, "is not the bundle's ca.crt"},
	} {
		r = kbRun(t, nil, "-i", inv, "restore", c.file, "--yes")
		if r.code == 0 || !strings.Contains(r.stderr, "refused before any change") || !strings.Contains(r.stderr, c.want) {
			t.Errorf("restore %s: exit %d, want a refusal saying %q\n%s", filepath.Base(c.file), r.code, c.want, r.stderr)
		}
		untouched("restore " + filepath.Base(c.file))
		if _, err := os.Stat("rstor.restore"); !os.IsNotExist(err) {
			t.Errorf("restore %s refused, yet its work directory ./rstor.restore is left: %v", filepath.Base(c.file), err)
		}
	}
	r = kbRun(t, nil, "-i", inv, "restore", enc, "--passphrase-file", pf, "--dry-run")
	if r.code != 0 || strings.Count(r.stdout, "restore the snapshot as member") != 3 {
		t.Errorf("restore --dry-run: exit %d, want the plan of 3 members\n%s", r.code, r.stdout)
	}
	untouched("restore --dry-run")

	// After the backup: its objects deleted, another created; a watch
	// opened before the restore.
	k("delete", "configmap", "before")
	k("delete", "secret", "before-secret")
	k("create", "configmap", "after", "--from-literal=k=v2")
	list, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldRV := list.ResourceVersion
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: oldRV})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	loseQuorum(t, l, kubeconfig)

	// restore, interrupted by SIGTERM once cp1's data directory moved.
	work := filepath.Join(dir, "work")
	var signalled atomic.Bool
	r = kbRunProc(t, nil, func(line string, p *os.Process) {
		if strings.Contains(line, "✓ cp1: restore etcd") && signalled.CompareAndSwap(false, true) {
			p.Signal(syscall.SIGTERM)
		}
	}, "-i", inv, "restore", enc, "--passphrase-file", pf, "--yes", "--work-dir", work)
	if !signalled.Load() {
		t.Fatalf("restore never restored cp1: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "Run the same restore again") {
		t.Errorf("restore stopped by SIGTERM: exit %d, want a failure saying how to complete it\n%s", r.code, r.stderr)
	}
	if out := labExecIn(t, l, "cp1", "ls -d /var/lib/etcd/member.kbootstrap-before-* | wc -l"); strings.TrimSpace(out) != "1" {
		t.Errorf("cp1 after the interrupted restore: %s data directories kept, want 1", strings.TrimSpace(out))
	}
	if _, err := os.Stat(filepath.Join(work, "snapshot.db")); err != nil {
		t.Errorf("the interrupted restore did not keep its snapshot for the next run: %v", err)
	}
	r = kbRun(t, nil, "-i", inv, "restore", enc, "--passphrase-file", pf, "--yes", "--work-dir", work, "-o", "json")
	if r.code != 0 {
		t.Fatalf("restore run again: exit %d", r.code)
	}
	if strings.Contains(r.stdout+r.stderr, passphrase) {
		t.Error("restore's output shows the passphrase")
	}
	var res struct {
		Seconds float64 `json:"seconds"`
		Members []struct {
			Node, Aside string
		} `json:"members"`
		Steps []struct {
			Name    string  `json:"name"`
			Seconds float64 `json:"seconds"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("restore -o json: %v\n%s", err, r.stdout)
	}
	t.Logf("timing: restore %.1fs, steps %+v", res.Seconds, res.Steps)
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Errorf("the completed restore left its work directory: %v", err)
	}
	restored(t, l, kubeconfig, cps)
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "before", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap before (in the backup): %v", err)
	}
	if s, err := cs.CoreV1().Secrets("default").Get(ctx, "before-secret", metav1.GetOptions{}); err != nil || string(s.Data["password"]) != "in-the-backup" {
		t.Errorf("Secret before-secret (in the backup): %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "after", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap after (created after the backup): %v, want NotFound", err)
	}
	for _, cp := range cps {
		if out := labExecIn(t, l, cp, "ls -d /var/lib/etcd/member.kbootstrap-before-* | wc -l"); strings.TrimSpace(out) == "0" {
			t.Errorf("%s: the data directory before the restore was not kept", cp)
		}
	}
	// The watch opened before: ended, and watching again from its revision
	// is refused as expired (410), so that a client lists again.
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				return
			}
		}
	}()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Error("the watch opened before the restore did not end within 30 s")
	}
	expiredWatch(t, cs, oldRV)
	// The revision moved on by 1e9.
	cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mid"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rv, _ := strconv.ParseInt(cm.ResourceVersion, 10, 64); rv < 1_000_000_000 {
		t.Errorf("resourceVersion after the restore %s, want past 1e9 (--bump-revision)", cm.ResourceVersion)
	}
	// The controllers work: a Deployment scaled gets its pods.
	k("scale", "deployment", "restore-probe", "--replicas=3")
	waitUntil(t, "restore-probe's 3 pods ready", 3*time.Minute, func() error {
		d, err := cs.AppsV1().Deployments("default").Get(ctx, "restore-probe", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != 3 {
			return fmt.Errorf("%d ready", d.Status.ReadyReplicas)
		}
		return nil
	})

	// No bundle: the same loss restored from cp1's own member, which holds
	// ConfigMap mid (written after the first restore).
	loseQuorum(t, l, kubeconfig)
	r = kbRun(t, nil, "-i", inv, "restore", "--from-member", "cp1", "--yes", "--work-dir", work)
	if r.code != 0 {
		t.Fatalf("restore --from-member cp1: exit %d", r.code)
	}
	restored(t, l, kubeconfig, cps)
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "mid", metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap mid (on cp1's member): %v", err)
	}

	// cp3 lost for good: a new, empty machine under its name. remove takes
	// its member and Node out through cp1; join makes it a control plane
	// again.
	if err := l.Recreate(ctx, "cp3"); err != nil {
		t.Fatal(err)
	}
	waitSystemd(t, l, "cp3")
	r = kbRun(t, nil, "-i", inv, "remove", "cp3", "-o", "json")
	var removed struct {
		Via         string   `json:"via"`
		EtcdMembers []string `json:"etcdMembers"`
		NodeDeleted bool     `json:"nodeDeleted"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &removed) != nil || len(removed.EtcdMembers) != 1 || !removed.NodeDeleted {
		t.Fatalf("remove cp3: exit %d, want its member and Node removed\n%s", r.code, r.stdout)
	}
	if ms, err := initEtcdMembersErr(kubeconfig); err != nil || len(ms) != 2 {
		t.Errorf("etcd after remove cp3: %d members (%v), want 2", len(ms), err)
	}
	images := filepath.Join(filepath.Dir(artifactsBin()), "images")
	if r = kbRun(t, nil, "-i", inv, "--host", "cp3", "playbook", "run", "prepare-node", "--binaries", artifactsBin(), "--images", images); r.code != 0 {
		t.Fatalf("prepare-node on the new cp3: exit %d", r.code)
	}
	if r = kbRun(t, nil, "-i", inv, "join", "--kubeconfig-out", kubeconfig); r.code != 0 {
		t.Fatalf("join the new cp3: exit %d", r.code)
	}
	waitUntil(t, "3 started etcd members after cp3 joined", 2*time.Minute, func() error {
		ms, err := initEtcdMembersErr(kubeconfig)
		if err != nil {
			return err
		}
		started := 0
		for _, m := range ms {
			if m.Name != "" && len(m.ClientURLs) > 0 {
				started++
			}
		}
		if len(ms) != 3 || started != 3 {
			return fmt.Errorf("%d members, %d started", len(ms), started)
		}
		return nil
	})
	t.Logf("timing: TestRestore %s", time.Since(start).Round(time.Second))
}

// restoreCluster forms a cluster of 3 control planes behind lb1 with init
// in the lab of spec, and returns its inventory, admin kubeconfig and a
// client.
func restoreCluster(t *testing.T, spec labSpec) (*lab.Lab, string, string, kubernetes.Interface) {
	t.Helper()
	l := labFor(t, spec)
	dir := t.TempDir()
	all := []string{"lb1", "cp1", "cp2", "cp3"}
	waitSystemd(t, l, all...)
	inv := kubernetesInventory(t, l, dir, "kbootstrap.yaml", spec.id, "", all...)
	prepareNodes(t, inv)
	kubeconfig := filepath.Join(dir, spec.id+".kubeconfig")
	if r := kbRun(t, nil, "-i", inv, "init", "--kubeconfig-out", kubeconfig); r.code != 0 {
		logInitFailure(t, l, []string{"lb1"}, all[1:])
		t.Fatalf("init: exit %d", r.code)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return l, inv, kubeconfig, kubernetes.NewForConfigOrDie(cfg)
}

// loseQuorum wipes etcd's data on cp2 and cp3 and waits until the API
// through lb1 is no longer ready.
func loseQuorum(t *testing.T, l *lab.Lab, kubeconfig string) {
	t.Helper()
	for _, cp := range []string{"cp2", "cp3"} {
		mustSh(t, l, cp, `mv /etc/kubernetes/manifests/etcd.yaml /root/etcd.yaml
alive() { for d in /proc/[0-9]*; do { read -r c < "$d/comm"; } 2>/dev/null || continue; [ "$c" = etcd ] && return 0; done; return 1; }
i=0; while alive && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
! alive
rm -rf /var/lib/etcd/member
mv /root/etcd.yaml /etc/kubernetes/manifests/etcd.yaml`)
	}
	waitUntil(t, "the API through lb1 no longer ready (etcd quorum lost)", 2*time.Minute, func() error {
		out, err := hostKubectl(kubeconfig, "get", "--raw", "/readyz")
		if err == nil && strings.TrimSpace(out) == "ok" {
			return fmt.Errorf("still ready")
		}
		return nil
	})
}

// restored checks the cluster after a restore: /readyz through lb1, three
// started members, no manifest left aside, no snapshot left on a node.
func restored(t *testing.T, l *lab.Lab, kubeconfig string, cps []string) {
	t.Helper()
	if out, err := hostKubectl(kubeconfig, "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
		t.Errorf("/readyz through lb1 after the restore: %v %s", err, out)
	}
	ms, err := initEtcdMembersErr(kubeconfig)
	if err != nil {
		t.Errorf("etcd members: %v", err)
	}
	started := 0
	for _, m := range ms {
		if m.Name != "" && len(m.ClientURLs) > 0 {
			started++
		}
	}
	if len(ms) != 3 || started != 3 {
		t.Errorf("etcd after the restore: %d members, %d started, want 3 and 3: %+v", len(ms), started, ms)
	}
	for _, cp := range cps {
		if out := labExecIn(t, l, cp, "ls /etc/kubernetes/kbootstrap-restore /var/lib/kbootstrap/restore 2>/dev/null; true"); strings.TrimSpace(out) != "" && strings.TrimSpace(out) != "/etc/kubernetes/kbootstrap-restore:" {
			t.Errorf("%s after the restore: left behind:\n%s", cp, out)
		}
	}
}

// expiredWatch checks that a watch from rv, a revision before the restore,
// is refused as expired (410 Gone), the answer that makes a client list.
func expiredWatch(t *testing.T, cs kubernetes.Interface, rv string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Errorf("watch from revision %s after the restore: %v, want 410 expired", rv, err)
		}
		return
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			st := apierrors.FromObject(ev.Object)
			if !apierrors.IsResourceExpired(st) && !apierrors.IsGone(st) {
				t.Errorf("watch from revision %s after the restore: %v, want 410 expired", rv, st)
			}
			return
		}
		t.Errorf("watch from revision %s after the restore: a %s event, want 410 expired", rv, ev.Type)
		return
	}
	t.Errorf("watch from revision %s after the restore ended without an error, want 410 expired", rv)
}

// otherCABundle writes a copy of the bundle at from whose CA (ca.crt and
// ca.key) is another cluster's.
func otherCABundle(t *testing.T, from, to string) string {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "kubernetes"}, crypto.Signer(key))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	var names []string
	m, err := backup.Visit(f, func(name string, body io.Reader) error {
		b, err := io.ReadAll(body)
		files[name], names = b, append(names, name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files[backup.PKIDir+"ca.crt"] = pem.EncodeToMemory(&pem.Block{Type: certutil.CertificateBlockType, Bytes: ca.Raw})
	files[backup.PKIDir+"ca.key"] = keyPEM
	var entries []backup.Entry
	for _, n := range names {
		entries = append(entries, backup.Entry{Name: n, Size: int64(len(files[n])), Body: bytes.NewReader(files[n])})
	}
	var out bytes.Buffer
	if _, err := backup.Write(&out, *m, entries); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}
