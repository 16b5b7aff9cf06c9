package etcd

// Host tests against a real etcd v3.6.5 started with the exact command line
// of the etcd.yaml kubeadm v1.34.4 writes (`kubeadm init phase etcd local`),
// certificates from `kubeadm init phase certs`, with only paths, addresses
// and ports moved into a temporary directory and free loopback ports. The
// node is node.NewLocal: these tests exercise the client, snapshots, verify
// and the probes without SSH (the lab tests in test/e2e do it through SSH).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

// hostBin finds the upstream binaries, or skips.
func hostBin(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("KBOOTSTRAP_ARTIFACTS_BIN"), "/var/cache/kbootstrap-lab/artifacts/k8s-v1.34.4-etcd-v3.6.5/bin", "../.lab/artifacts/bin"}
	for _, d := range cands {
		if d == "" {
			continue
		}
		ok := true
		for _, b := range []string{"etcd", "etcdctl", "etcdutl", "kubeadm"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				ok = false
			}
		}
		if ok {
			abs, _ := filepath.Abs(d)
			return abs
		}
	}
	t.Skip("etcd binaries not built: run make lab-artifacts")
	return ""
}

// hostEtcd is one etcd started for a test.
type hostEtcd struct {
	bin, root string
	client    string // https://127.0.0.1:port
	flags     ClientFlags
	cmd       *exec.Cmd
	done      <-chan struct{} // closed when the process has exited
	log       *syncBuffer
}

// freeLoopbackPorts returns n distinct ports free on both 127.0.0.1 and
// 127.0.0.2: every listener stays open until all n are chosen, so the
// kernel cannot hand the same port out twice (it did: etcd's client and
// peer URLs on one port, "address already in use").
func freeLoopbackPorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l2, err := net.Listen("tcp", "127.0.0.2:"+port)
		if err != nil {
			continue // taken on the other address; l stays held, so not offered again
		}
		defer l2.Close()
		ports = append(ports, port)
	}
	return ports
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startHostEtcd writes kubeadm's certificates and etcd manifest under a
// chroot directory (kubeadm --rootfs) and starts etcd with the manifest's
// command: paths prefixed with that directory, ports replaced by free ones.
func startHostEtcd(t *testing.T) *hostEtcd {
	t.Helper()
	bin := hostBin(t)
	if os.Geteuid() != 0 {
		t.Skip("kubeadm --rootfs (chroot) needs root")
	}
	root := t.TempDir()
	cfg := `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: 198.51.100.10, bindPort: 6443}
nodeRegistration: {name: hostetcd, criSocket: unix:///run/containerd/containerd.sock}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.34.4
certificatesDir: /etc/kubernetes/pki
etcd: {local: {dataDir: /var/lib/etcd, serverCertSANs: [127.0.0.2]}}
`
	if err := os.WriteFile(filepath.Join(root, "kubeadm.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeadm := filepath.Join(bin, "kubeadm")
	for _, phase := range [][]string{
		{"init", "phase", "certs", "etcd-ca"}, {"init", "phase", "certs", "etcd-server"}, {"init", "phase", "certs", "etcd-peer"},
		{"init", "phase", "certs", "etcd-healthcheck-client"}, {"init", "phase", "certs", "apiserver-etcd-client"},
		{"init", "phase", "certs", "ca"}, {"init", "phase", "etcd", "local"},
	} {
		run(t, kubeadm, append(phase, "--config", "/kubeadm.yaml", "--rootfs", root)...)
	}
	manifest, err := os.ReadFile(filepath.Join(root, "etc/kubernetes/manifests/etcd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	argv, _, err := ManifestCommand(manifest, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	// A port can still be taken between its check and etcd's bind: then
	// etcd exits at once and is started again on other ports.
	for attempt := 1; ; attempt++ {
		e, exited := startEtcdOn(t, bin, root, argv, freeLoopbackPorts(t, 3))
		if !exited || attempt == 3 || !strings.Contains(e.log.String(), "address already in use") {
			if exited {
				t.Fatalf("etcd exited:\n%s", e.log.String())
			}
			return e
		}
		// Whatever the failed start left of a data directory goes too.
		if err := os.RemoveAll(filepath.Join(root, "var/lib/etcd")); err != nil {
			t.Fatal(err)
		}
	}
}

// startEtcdOn starts etcd with argv's ports 2379, 2380 and 2381 replaced by
// ports and waits until it is healthy, or reports that it exited.
func startEtcdOn(t *testing.T, bin, root string, manifestArgv []string, p []string) (e *hostEtcd, exited bool) {
	t.Helper()
	ports := map[string]string{":2379": ":" + p[0], ":2380": ":" + p[1], ":2381": ":" + p[2]}
	argv := append([]string(nil), manifestArgv...)
	for i, a := range argv {
		for from, to := range ports {
			a = strings.ReplaceAll(a, from, to)
		}
		// kubeadm refuses a loopback advertise address: it writes a
		// documentation address, moved here to a loopback one.
		a = strings.ReplaceAll(a, "198.51.100.10", "127.0.0.2")
		a = strings.ReplaceAll(a, "=/etc/kubernetes/", "="+root+"/etc/kubernetes/")
		a = strings.ReplaceAll(a, "=/var/lib/etcd", "="+root+"/var/lib/etcd")
		argv[i] = a
	}
	argv[0] = filepath.Join(bin, "etcd")
	e = &hostEtcd{bin: bin, root: root, log: &syncBuffer{}}
	e.client = "https://127.0.0.1" + ports[":2379"]
	pki := root + "/etc/kubernetes/pki"
	e.flags = ClientFlags{Endpoints: []string{e.client}, CACert: pki + "/etcd/ca.crt", Cert: pki + "/apiserver-etcd-client.crt", Key: pki + "/apiserver-etcd-client.key", Prefix: DefaultPrefix}
	e.cmd = exec.Command(argv[0], argv[1:]...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.stop)
	done := make(chan struct{})
	go func() { e.cmd.Wait(); close(done) }()
	e.done = done
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := e.etcdctl("endpoint", "health"); err == nil {
			return e, false
		}
		select {
		case <-done:
			return e, true
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not become healthy:\n%s", e.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe to write from the etcd process's copy
// goroutines while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *hostEtcd) stop() {
	e.cmd.Process.Kill()
	<-e.done
}

func (e *hostEtcd) etcdctl(args ...string) (string, error) {
	args = append([]string{"--endpoints", e.client, "--cacert", e.flags.CACert, "--cert", e.flags.Cert, "--key", e.flags.Key, "--command-timeout", "10s"}, args...)
	out, err := exec.Command(filepath.Join(e.bin, "etcdctl"), args...).Output()
	return string(out), err
}

func (e *hostEtcd) connect(t *testing.T, n node.Node) *Client {
	t.Helper()
	c, err := Connect(context.Background(), n, e.flags, ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestHostMembersAndStatus(t *testing.T) {
	e := startHostEtcd(t)
	c := e.connect(t, node.NewLocal("host", nil))
	ms, sts, err := c.MembersStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.etcdctl("member", "list", "-w", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Members []struct {
			ID         json.Number
			Name       string   `json:"name"`
			PeerURLs   []string `json:"peerURLs"`
			ClientURLs []string `json:"clientURLs"`
		} `json:"members"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&ref); err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || len(ref.Members) != 1 {
		t.Fatalf("members %+v, etcdctl %+v", ms, ref)
	}
	id, _ := strconv.ParseUint(ref.Members[0].ID.String(), 10, 64)
	want := Member{ID: strconv.FormatUint(id, 16), Name: ref.Members[0].Name, PeerURLs: ref.Members[0].PeerURLs, ClientURLs: ref.Members[0].ClientURLs}
	if fmt.Sprint(ms[0]) != fmt.Sprint(want) || ms[0].Name != "hostetcd" {
		t.Errorf("got %+v want %+v", ms[0], want)
	}
	if st := sts[0]; st.Err != "" || !st.Leader || st.Version != "3.6.5" || st.DBSize == 0 || st.RaftIndex == 0 {
		t.Errorf("status %+v", st)
	}
}

func TestHostSnapshotSaveAndVerify(t *testing.T) {
	e := startHostEtcd(t)
	for i := range 50 {
		if _, err := e.etcdctl("put", fmt.Sprintf("/registry/k%d", i), strings.Repeat("v", 1000)); err != nil {
			t.Fatal(err)
		}
	}
	e.etcdctl("del", "/registry/k7") // a tombstone: 49 live keys
	c := e.connect(t, node.NewLocal("host", nil))
	dir := t.TempDir()
	file := filepath.Join(dir, "s.db")
	res, err := c.SaveSnapshot(context.Background(), file, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != res.Size || !HasTrailer(res.Size) {
		t.Fatalf("%v %v %+v", fi, err, res)
	}
	v, err := VerifySnapshot(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(e.bin, "etcdutl"), "snapshot", "status", file, "-w", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Hash      uint32 `json:"hash"`
		Revision  int64  `json:"revision"`
		TotalKey  int    `json:"totalKey"`
		TotalSize int64  `json:"totalSize"`
		Version   string `json:"version"`
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	if v.Hash != ref.Hash || v.Revision != ref.Revision || v.TotalKey != ref.TotalKey || v.TotalSize != ref.TotalSize || v.Version != ref.Version {
		t.Errorf("verify %+v\netcdutl %s", v, out)
	}
	if v.TotalKey != 49 || v.SHA256 != res.SHA256 || v.Revision != res.Revision {
		t.Errorf("verify %+v save %+v", v, res)
	}
	// A flipped byte fails the trailer check.
	b, _ := os.ReadFile(file)
	b[4096] ^= 1
	bad := filepath.Join(dir, "bad.db")
	os.WriteFile(bad, b, 0o600)
	if _, err := VerifySnapshot(context.Background(), bad); !errors.Is(err, ErrTrailerMismatch) {
		t.Errorf("corrupted: %v", err)
	}
}

// cutNode is a local node whose connections are cut after limit bytes read.
type cutNode struct {
	*node.Local
	limit int64
}

func (n *cutNode) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := n.Local.Dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: c, left: &atomic.Int64{}, limit: n.limit}, nil
}

type cutConn struct {
	net.Conn
	left  *atomic.Int64
	limit int64
	once  sync.Once
}

func (c *cutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.left.Add(int64(n)) > c.limit {
		c.once.Do(func() { c.Conn.Close() })
	}
	return n, err
}

func TestHostSnapshotFailuresLeaveNothing(t *testing.T) {
	e := startHostEtcd(t)
	c0 := e.connect(t, node.NewLocal("host", nil))
	val := strings.Repeat("x", 1<<20)
	for i := range 40 {
		if _, err := c0.Put(context.Background(), fmt.Sprintf("/big/%d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "s.db")
	os.WriteFile(file, []byte("previous"), 0o600)

	t.Run("connection cut mid-stream", func(t *testing.T) {
		c := e.connect(t, &cutNode{Local: node.NewLocal("cutnode", nil), limit: 8 << 20})
		_, err := c.SaveSnapshot(context.Background(), file, SnapshotOptions{})
		if err == nil || !strings.Contains(err.Error(), "cutnode") {
			t.Fatalf("err %v", err)
		}
		assertUntouched(t, file)
	})
	t.Run("context cancelled mid-stream", func(t *testing.T) {
		c := e.connect(t, node.NewLocal("host", nil))
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			for {
				if fi, err := os.Stat(file + ".part"); err == nil && fi.Size() > 4<<20 {
					cancel()
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		_, err := c.SaveSnapshot(ctx, file, SnapshotOptions{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		assertUntouched(t, file)
	})
	t.Run("rotation keeps older snapshots", func(t *testing.T) {
		c := e.connect(t, node.NewLocal("host", nil))
		for range 3 {
			if _, err := c.SaveSnapshot(context.Background(), file, SnapshotOptions{Keep: 2}); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{file, file + ".1"} {
			if _, err := VerifySnapshot(context.Background(), p); err != nil {
				t.Error(err)
			}
		}
		if _, err := os.Stat(file + ".2"); !os.IsNotExist(err) {
			t.Errorf("keep 2 left %s.2", file)
		}
	})
}

func assertUntouched(t *testing.T, file string) {
	t.Helper()
	if b, _ := os.ReadFile(file); string(b) != "previous" {
		t.Errorf("%s changed (%d bytes)", file, len(b))
	}
	if _, err := os.Stat(file + ".part"); !os.IsNotExist(err) {
		t.Errorf(".part left behind: %v", err)
	}
}

func TestHostEtcdDownIsBounded(t *testing.T) {
	e := startHostEtcd(t)
	e.stop()
	n := node.NewLocal("downnode", nil)
	start := time.Now()
	c, err := Connect(context.Background(), n, e.flags, ClientOptions{Timeout: 3 * time.Second})
	if err == nil {
		defer c.Close()
		_, err = c.Members(context.Background())
	}
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "downnode") || !strings.Contains(err.Error(), "connection refused") || took > 10*time.Second {
		t.Fatalf("after %s: %v", took, err)
	}
	t.Logf("dead etcd: %s after %s", err, took.Round(time.Millisecond))
	// The snapshot too.
	start = time.Now()
	c2, err := Connect(context.Background(), n, e.flags, ClientOptions{Timeout: 3 * time.Second, Endpoints: e.flags.Endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	file := filepath.Join(t.TempDir(), "s.db")
	_, err = c2.SaveSnapshot(context.Background(), file, SnapshotOptions{IdleTimeout: 3 * time.Second})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("snapshot of a dead etcd after %s: %v", time.Since(start), err)
	}
	if _, err := os.Stat(file + ".part"); !os.IsNotExist(err) {
		t.Error(".part left behind")
	}
}

// selfSignedCA returns a throwaway CA (PEM cert and key).
func selfSignedCA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

func TestHostProbes(t *testing.T) {
	e := startHostEtcd(t)
	n := node.NewLocal("host", nil)
	ep, _ := ParseEndpoint(e.client)
	ctx := context.Background()
	if r := ProbeTLS(ctx, n, ep.HostPort, ep.ServerName, nil); r.Outcome != Refused {
		t.Errorf("no client certificate: %v %s", r.Outcome, r.Detail)
	}
	if r := ProbePlainHTTP(ctx, n, ep.HostPort); r.Outcome != Refused {
		t.Errorf("plain http: %v %s", r.Outcome, r.Detail)
	}
	ca, key := selfSignedCA(t)
	other, err := MintClientCert(ca, key, "probe")
	if err != nil {
		t.Fatal(err)
	}
	if r := ProbeTLS(ctx, n, ep.HostPort, ep.ServerName, other); r.Outcome != Refused {
		t.Errorf("foreign CA: %v %s", r.Outcome, r.Detail)
	}
	// The probe does see an acceptance: a certificate minted from etcd's own CA.
	pki := e.root + "/etc/kubernetes/pki/etcd/"
	eca, _ := os.ReadFile(pki + "ca.crt")
	ekey, _ := os.ReadFile(pki + "ca.key")
	own, err := MintClientCert(eca, ekey, "probe")
	if err != nil {
		t.Fatal(err)
	}
	if r := ProbeTLS(ctx, n, ep.HostPort, ep.ServerName, own); r.Outcome != Accepted || !strings.Contains(r.Detail, "etcdserver") {
		t.Errorf("etcd's own CA: %v %s", r.Outcome, r.Detail)
	}
}
