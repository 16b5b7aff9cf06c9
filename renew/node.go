package renew

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/pki"
)

// lock is a renewal's hold on a node: a file with an id and a heartbeat.
type lock struct {
	n    node.Node
	id   string
	stop chan struct{}
	done chan struct{}
}

func lockLine(id string, now time.Time) string {
	return fmt.Sprintf("kbootstrap-certs-renew id=%s host=%s pid=%d heartbeat=%d\n", id, hostname(), os.Getpid(), now.Unix())
}

// lock takes the node's lock, or takes over a stale one (and says so).
func (o Options) lock(ctx context.Context, t *target) (*lock, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	l := &lock{n: t.n, id: hex.EncodeToString(b), stop: make(chan struct{}), done: make(chan struct{})}
	line := lockLine(l.id, o.Now())
	cmd := fmt.Sprintf("mkdir -p %s && chmod 700 %s && (set -C; printf %%s %s > %s) 2>/dev/null", StateDir, StateDir, node.ShellQuote(line), LockFile)
	if _, err := t.n.Run(ctx, cmd); err != nil {
		var ee *node.ExitError
		if !errors.As(err, &ee) {
			return nil, fmt.Errorf("lock %s: %w", LockFile, err)
		}
		held, rerr := t.n.ReadFile(ctx, LockFile)
		if rerr != nil {
			return nil, fmt.Errorf("lock %s: %w", LockFile, rerr)
		}
		hb := heartbeat(string(held))
		age := o.Now().Sub(hb)
		if !hb.IsZero() && age < o.StaleAfter {
			return nil, fmt.Errorf("%w (%s, heartbeat %s ago): not overlapping it", ErrLocked, strings.TrimSpace(string(held)), age.Round(time.Second))
		}
		if err := t.n.WriteFile(ctx, LockFile, strings.NewReader(line), node.WriteOptions{Mode: 0o600}); err != nil {
			return nil, fmt.Errorf("taking over %s: %w", LockFile, err)
		}
		fmt.Fprintf(o.Out, "%s: took over a stale lock (%s, last heartbeat %s ago, older than %s): its run is dead\n",
			t.name, strings.TrimSpace(string(held)), age.Round(time.Second), o.StaleAfter)
	}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(o.StaleAfter / 4)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				hctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, _ = l.n.Run(hctx, fmt.Sprintf("grep -q 'id=%s ' %s && printf %%s %s > %s.tmp && mv -f %s.tmp %s",
					l.id, LockFile, node.ShellQuote(lockLine(l.id, time.Now())), LockFile, LockFile, LockFile))
				cancel()
			}
		}
	}()
	return l, nil
}

func (l *lock) release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = l.n.Run(ctx, fmt.Sprintf("grep -q 'id=%s ' %s && rm -f %s", l.id, LockFile, LockFile))
}

func heartbeat(line string) time.Time {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "heartbeat="); ok {
			if s, err := strconv.ParseInt(v, 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}

// backup archives the PKI and the kubeconfigs (mode 0600) and keeps the
// last o.Keep archives.
func (o Options) backup(ctx context.Context, n node.Node) (string, error) {
	f := BackupDir + "/kubernetes-" + o.Now().UTC().Format("20060102T150405Z") + ".tar.gz"
	cmd := fmt.Sprintf(`set -e; umask 077; mkdir -p %[1]s; chmod 700 %[1]s; cd %[2]s
tar -czf %[3]s.tmp pki $(ls *.conf)
chmod 600 %[3]s.tmp; mv -f %[3]s.tmp %[3]s
ls -1t %[1]s/kubernetes-*.tar.gz | tail -n +%[4]d | xargs -r rm -f`, BackupDir, KubernetesDir, f, o.Keep+1)
	if _, err := n.Run(ctx, cmd); err != nil {
		return "", err
	}
	return f, nil
}

// restore puts the manifests back, extracts the backup over the files and
// restarts the static pods, gated on their health as in a renewal.
func (o Options) restore(ctx context.Context, t *target, backup string) error {
	cmd := fmt.Sprintf(`set -e; for f in %[1]s/*.yaml; do [ -e "$f" ] || continue; mv -f "$f" %[2]s/; done
tar -xzf %[3]s -C %[4]s`, asideDir, ManifestsDir, backup, KubernetesDir)
	if _, err := t.n.Run(ctx, cmd); err != nil {
		return err
	}
	return o.restartAll(ctx, t, components)
}

const drainRule = "INPUT -p tcp --dport 6443 --syn ! -i lo -j REJECT --reject-with tcp-reset"

// drain refuses new connections to the API server from other hosts, so that
// the load balancer's check marks it down while kept-alive connections carry
// on, then waits for the load balancer to notice. No iptables: no drain.
func (o Options) drain(ctx context.Context, n node.Node) (bool, error) {
	res, err := n.Run(ctx, "command -v iptables || true")
	if err != nil {
		return false, err
	}
	if strings.TrimSpace(string(res.Stdout)) == "" {
		return false, nil
	}
	if _, err := n.Run(ctx, "iptables -w -C "+drainRule+" 2>/dev/null || iptables -w -I "+drainRule); err != nil {
		return false, err
	}
	return true, sleep(ctx, o.DrainWait)
}

func (o Options) undrain(ctx context.Context, n node.Node) error {
	if _, err := n.Run(ctx, "while iptables -w -C "+drainRule+" 2>/dev/null; do iptables -w -D "+drainRule+"; done"); err != nil {
		return err
	}
	return sleep(ctx, o.DrainWait)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func running(ctx context.Context, n node.Node, c string) (string, error) {
	// crictl when installed, else containerd's ctr (what prepare-node installs).
	res, err := n.Run(ctx, fmt.Sprintf(`if command -v crictl >/dev/null; then crictl ps -q --state running --name '^%[1]s$'; else
tasks=$(ctr -n k8s.io tasks ls)
for id in $(ctr -n k8s.io containers ls -q 'labels."io.kubernetes.container.name"==%[1]s'); do
  printf '%%s\n' "$tasks" | awk -v id="$id" '$1 == id && $3 == "RUNNING" { print id }'
done; fi`, c))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

// poll calls f every second until it returns nil or o.Timeout passes.
func (o Options) poll(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var last error
	for {
		if last = f(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s: %w", what, o.Timeout, last)
		case <-time.After(time.Second):
		}
	}
}

// restart moves the manifest out, waits until the kubelet has stopped the
// pod, moves it back and waits until it runs again and is healthy.
func (o Options) restart(ctx context.Context, t *target, c string) error {
	old, err := running(ctx, t.n, c)
	if err != nil {
		return err
	}
	m := ManifestsDir + "/" + c + ".yaml"
	aside := asideDir + "/" + c + ".yaml"
	if _, err := t.n.Run(ctx, fmt.Sprintf("mkdir -p %s && chmod 700 %s && mv %s %s", asideDir, asideDir, m, aside)); err != nil {
		return err
	}
	stopErr := o.poll(ctx, "the kubelet stopping "+c, func(ctx context.Context) error {
		id, err := running(ctx, t.n, c)
		if err == nil && id != "" {
			err = fmt.Errorf("container %s still running", id)
		}
		return err
	})
	if _, err := t.n.Run(ctx, fmt.Sprintf("mv %s %s", aside, m)); err != nil {
		return err
	}
	if stopErr != nil {
		return stopErr
	}
	if err := o.poll(ctx, c+" running again", func(ctx context.Context) error {
		id, err := running(ctx, t.n, c)
		if err == nil && (id == "" || id == old) {
			err = errors.New("no new container yet")
		}
		return err
	}); err != nil {
		return err
	}
	return o.poll(ctx, c+" healthy", func(ctx context.Context) error { return health(ctx, t.n, c) })
}

// healthAll gates a node on all its components: etcd's member healthy, the
// API server ready (its readiness includes its etcd client), the
// controller-manager and scheduler healthy. An API server this run
// restarted whose etcd client still backs off after etcd's restart is
// restarted once more: the node is still drained, so no client sees it.
func (o Options) healthAll(ctx context.Context, t *target, cs []string, apiServerRestarted bool) error {
	for _, c := range cs {
		wait := o
		if c == "kube-apiserver" {
			wait.Timeout = min(o.Timeout, time.Minute)
		}
		err := wait.poll(ctx, c+" healthy", func(ctx context.Context) error { return health(ctx, t.n, c) })
		if err != nil && c == "kube-apiserver" && apiServerRestarted {
			fmt.Fprintf(o.Out, "%s: kube-apiserver not ready within %s (%v): restarting it once more, still drained\n", t.name, wait.Timeout, err)
			err = o.restart(ctx, t, c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// apiServerEtcd is an etcd client through n with its kube-apiserver's etcd
// flags and credentials; endpoints, when given, replace the flags' own.
// The health gates call it on every poll, on purpose: the manifest and the
// files are read again each time, so a gate after a renewal proves the
// renewed apiserver-etcd-client certificate the API server loads, never a
// client connected before it changed.
func apiServerEtcd(ctx context.Context, n node.Node, endpoints ...string) (*etcd.Client, error) {
	f, err := etcd.DiscoverFlags(ctx, n)
	if err != nil {
		return nil, err
	}
	return etcd.Connect(ctx, n, f.ClientFlags, etcd.ClientOptions{Timeout: 10 * time.Second, Endpoints: endpoints})
}

// clusterHealthy checks, through n with its kube-apiserver's credentials,
// that every etcd member is started, a voter, and answers its status without
// errors or alarms. A node without etcd (external etcd) passes.
func clusterHealthy(ctx context.Context, n node.Node) error {
	if _, err := n.Stat(ctx, ManifestsDir+"/etcd.yaml"); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c, err := apiServerEtcd(ctx, n)
	if err != nil {
		return err
	}
	defer c.Close()
	ms, sts, err := c.MembersStatus(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i, m := range ms {
		if m.IsLearner {
			errs = append(errs, fmt.Errorf("etcd member %s (%s) is a learner", m.Name, m.ID))
		} else if err := sts[i].Problem(); err != nil {
			errs = append(errs, fmt.Errorf("etcd member %s (%s): %w", m.Name, m.ID, err))
		}
	}
	return errors.Join(errs...)
}

// etcdMemberHealthy checks the node's own etcd member with the
// kube-apiserver's credentials, as the API server reaches it: the member
// answers its status without errors or alarms and serves a linearizable read
// (so it has a leader and the cluster has quorum).
func etcdMemberHealthy(ctx context.Context, n node.Node) error {
	const ep = "https://127.0.0.1:2379"
	c, err := apiServerEtcd(ctx, n, ep)
	if err != nil {
		return err
	}
	defer c.Close()
	st := c.Status(ctx, ep)
	if err := st.Problem(); err != nil {
		return fmt.Errorf("etcd member at %s: %w", ep, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Get(rctx, "health"); err != nil {
		return fmt.Errorf("etcd member %s: linearizable read: %w", st.MemberID, err)
	}
	return nil
}

// healthURL is each component's health endpoint on the node's loopback.
var healthURL = map[string]string{
	"kube-apiserver":          "https://127.0.0.1:6443/readyz",
	"etcd":                    "http://127.0.0.1:2381/health",
	"kube-controller-manager": "https://127.0.0.1:10257/healthz",
	"kube-scheduler":          "https://127.0.0.1:10259/healthz",
}

// health asks a component's health endpoint through the node.
func health(ctx context.Context, n node.Node, c string) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     func(ctx context.Context, network, addr string) (net.Conn, error) { return n.Dial(ctx, network, addr) },
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // health only; the certificates are checked apart
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL[c], nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", healthURL[c], resp.Status, bytes.TrimSpace(body))
	}
	if c == "etcd" {
		if !bytes.Contains(body, []byte(`"health":"true"`)) {
			return fmt.Errorf("%s: %s", healthURL[c], bytes.TrimSpace(body))
		}
		return etcdMemberHealthy(ctx, n)
	}
	return nil
}

// servesFile checks by a TLS handshake through the node that addr serves
// the certificate in file (same serial and NotAfter).
func servesFile(ctx context.Context, n node.Node, file, addr string) error {
	raw, err := n.ReadFile(ctx, file)
	if err != nil {
		return err
	}
	certs, err := pki.LoadCertificate(raw)
	if err != nil || len(certs) == 0 {
		return fmt.Errorf("%s: %v", file, err)
	}
	want := certs[0]
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := n.Dial(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	defer conn.Close()
	var got *x509.Certificate
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) > 0 {
			got, _ = x509.ParseCertificate(raw[0])
		}
		return nil
	}})
	herr := tc.HandshakeContext(ctx) // etcd may refuse us without a client certificate: its own was seen first
	if got == nil {
		return fmt.Errorf("%s: no certificate served: %v", addr, herr)
	}
	if got.SerialNumber.Cmp(want.SerialNumber) != 0 || !got.NotAfter.Equal(want.NotAfter) {
		return fmt.Errorf("%s serves a certificate expiring %s, not %s's (%s)", addr, got.NotAfter.Format(time.RFC3339), file, want.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// writeKubeconfig writes the node's admin.conf, pointed at the endpoint, to
// o.KubeconfigOut (0600).
func (o Options) writeKubeconfig(ctx context.Context, n node.Node) error {
	raw, err := n.ReadFile(ctx, KubernetesDir+"/admin.conf")
	if err != nil {
		return err
	}
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		return err
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + o.Inventory.Endpoint()
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return node.NewLocal("local", nil).WriteFile(ctx, o.KubeconfigOut, bytes.NewReader(out), node.WriteOptions{Mode: 0o600})
}

// kubeletConfig is the part of the kubelet's configuration file the
// rotation check reads.
type kubeletConfig struct {
	RotateCertificates *bool `json:"rotateCertificates"`
}

// KubeletConfigFile is where kubeadm writes the kubelet's configuration.
const KubeletConfigFile = "/var/lib/kubelet/config.yaml"

// kubeletRotation checks, without renewing anything, that the kubelet
// rotates its own client certificate: kubelet.conf references a file (the
// kubelet's kubelet-client-current.pem) rather than embedding one, and the
// kubelet's configuration has rotateCertificates: true. It returns what it
// found and whether the certificate rotates.
func kubeletRotation(ctx context.Context, n node.Node) (string, bool, error) {
	raw, err := n.ReadFile(ctx, KubernetesDir+"/kubelet.conf")
	if err != nil {
		return "", false, err
	}
	kc, err := pki.LoadKubeconfig(raw)
	if err != nil {
		return "", false, fmt.Errorf("%s/kubelet.conf: %w", KubernetesDir, err)
	}
	cfgRaw, err := n.ReadFile(ctx, KubeletConfigFile)
	if err != nil {
		return "", false, err
	}
	var cfg kubeletConfig
	if err := yaml.Unmarshal(cfgRaw, &cfg); err != nil {
		return "", false, fmt.Errorf("%s: %w", KubeletConfigFile, err)
	}
	switch {
	case cfg.RotateCertificates == nil || !*cfg.RotateCertificates:
		return fmt.Sprintf("the kubelet does not rotate its client certificate (%s: rotateCertificates is not true): set it and restart the kubelet; kubeadm does not renew kubelet.conf", KubeletConfigFile), false, nil
	case kc.ClientCertFile == "":
		return "kubelet.conf embeds its client certificate: the kubelet has not rotated it yet (it points kubelet.conf at its kubelet-client-current.pem once it has)", false, nil
	}
	certRaw, err := n.ReadFile(ctx, kc.ClientCertFile)
	if err != nil {
		return "", false, err
	}
	certs, err := pki.LoadCertificate(certRaw)
	if err != nil || len(certs) == 0 {
		return "", false, fmt.Errorf("%s: %v", kc.ClientCertFile, err)
	}
	return fmt.Sprintf("the kubelet rotates its client certificate (%s, expires %s); not renewed here", kc.ClientCertFile, certs[0].NotAfter.UTC().Format(time.RFC3339)), true, nil
}
