package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// renewSpec is the lab of `kbootstrap certs renew`: three control planes
// behind a load balancer, no worker.
var renewSpec = labSpec{
	id: "renew", subnet: "10.95.0.0/24", subnet2: "10.96.0.0/24", kubernetes: true,
	nodes: []lab.NodeSpec{
		{Name: "lb1", Role: "loadbalancer"},
		{Name: "cp1", Role: "control-plane"}, {Name: "cp2", Role: "control-plane"}, {Name: "cp3", Role: "control-plane"},
	},
}

// servedNotAfter is the NotAfter of the certificate addr serves.
func servedNotAfter(addr string) (time.Time, error) {
	var leaf *x509.Certificate
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) > 0 {
			leaf, _ = x509.ParseCertificate(raw[0])
		}
		return nil
	}})
	if conn != nil {
		conn.Close()
	}
	if leaf == nil {
		return time.Time{}, fmt.Errorf("%s: no certificate: %v", addr, err)
	}
	return leaf.NotAfter, nil
}

// apiPoller asks the API through the load balancer every 0.5 s, as a client
// with a kept-alive connection does.
type apiPoller struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       sync.WaitGroup
}

func pollAPI(t *testing.T, kubeconfig string) *apiPoller {
	t.Helper()
	raw, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kc := kubeconfigFields(t, raw)
	cert, err := tls.X509KeyPair(kc.ClientCertData, kc.ClientKeyData)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(kc.CAData)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}, ForceAttemptHTTP2: true}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	p := &apiPoller{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			resp, err := client.Get(kc.Server + "/api/v1/namespaces/default")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("HTTP %s", resp.Status)
				}
			}
			if err != nil {
				p.failed.Add(1)
				p.mu.Lock()
				p.errs = append(p.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				p.mu.Unlock()
			} else {
				p.ok.Add(1)
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *apiPoller) Stop() (ok, failed int64, errs []string) {
	close(p.stop)
	p.done.Wait()
	return p.ok.Load(), p.failed.Load(), p.errs
}

// TestCertsRenew forms a cluster of 3 control planes with certificates valid
// 48h, then: --dry-run changes nothing; renewal of all 3 control planes one
// at a time with the API polled through lb1 every 0.5 s and no request
// failing; the served certificates are the new ones; a second run with a
// window that excludes them is a no-op; a renewal made to fail on cp2 (its
// kubeadm exits 1) restores cp2, leaves cp3 untouched and the cluster healthy.
//
//	make lab-artifacts && cd test && go test -count=1 -v -run TestCertsRenew ./e2e/
func TestCertsRenew(t *testing.T) {
	if artifactsBin() == "" {
		t.Skip("the upstream artifacts are missing: make lab-artifacts")
	}
	l := labFor(t, renewSpec)
	images := filepath.Join(filepath.Dir(artifactsBin()), "images")
	dir := t.TempDir()
	all := []string{"lb1", "cp1", "cp2", "cp3"}
	for _, n := range all {
		waitUntil(t, n+": systemd running", 90*time.Second, func() error {
			out, err := l.Exec(context.Background(), n, "sh", "-c", `s=$(systemctl is-system-running || true); [ "$s" = running ] || { echo "$s"; exit 1; }`)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name: renew\nkubernetesVersion: v1.34.4\ncertificateValidity: 48h\nssh:\n  user: root\n  keyFile: %s\n  knownHostsFile: %s\nnodes:\n", l.KeyFile, l.KnownHostsFile)
	addr := map[string]string{}
	for _, name := range all {
		n, _ := l.Node(name)
		addr[name] = n.Addresses[0]
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    internalAddress: %s\n    role: %s\n", n.Name, n.Addresses[0], n.Addresses[0], n.Role)
	}
	inv := writeFile(t, dir, "kbootstrap.yaml", b.String(), 0o644)

	r := kbRun(t, nil, "-i", inv, "playbook", "run", "prepare-node", "--binaries", artifactsBin(), "--images", images,
		"-e", "cgroup_driver=cgroupfs", "-e", "restrict_oom_score_adj=true")
	if r.code != 0 {
		t.Fatalf("prepare-node: exit %d", r.code)
	}
	kubeconfig := filepath.Join(dir, "renew.kubeconfig")
	r = kbRun(t, nil, "-i", inv, "init", "--kubeconfig-out", kubeconfig)
	if r.code != 0 {
		t.Fatalf("init: exit %d", r.code)
	}
	cps := []string{"cp1", "cp2", "cp3"}
	served := func() map[string]time.Time {
		m := map[string]time.Time{}
		for _, cp := range cps {
			for _, port := range []string{"6443", "2379"} {
				na, err := servedNotAfter(net.JoinHostPort(addr[cp], port))
				if err != nil {
					t.Fatalf("%s:%s: %v", cp, port, err)
				}
				m[cp+":"+port] = na
			}
		}
		return m
	}
	pkiSum := func(cp string) string {
		return labExecIn(t, l, cp, "find /etc/kubernetes/pki /etc/kubernetes/*.conf -type f | sort | xargs sha256sum")
	}
	healthy := func() error {
		out, err := hostKubectl(kubeconfig, "get", "--raw", "/readyz")
		if err != nil || strings.TrimSpace(out) != "ok" {
			return fmt.Errorf("readyz through lb1: %v: %s", err, out)
		}
		for _, cp := range cps {
			out, err := hostKubectl(kubeconfig, "-s", "https://"+addr[cp]+":6443", "get", "--raw", "/readyz")
			if err != nil || strings.TrimSpace(out) != "ok" {
				return fmt.Errorf("%s readyz: %v: %s", cp, err, out)
			}
		}
		return nil
	}
	waitUntil(t, "API ready on every control plane", 60*time.Second, healthy)

	// (a) --dry-run changes nothing.
	before := map[string]string{}
	for _, cp := range cps {
		before[cp] = pkiSum(cp)
	}
	r = kbRun(t, nil, "-i", inv, "certs", "renew", "--if-expiring-within", "30d", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "cp1") {
		t.Errorf("renew --dry-run: exit %d", r.code)
	}
	for _, cp := range cps {
		if pkiSum(cp) != before[cp] {
			t.Errorf("%s: --dry-run changed /etc/kubernetes", cp)
		}
	}

	// (b) renewal of the 3 control planes, the API polled throughout.
	old := served()
	poll := pollAPI(t, kubeconfig)
	r = kbRun(t, nil, "-i", inv, "certs", "renew", "--if-expiring-within", "30d", "--kubeconfig-out", kubeconfig)
	ok, failed, errs := poll.Stop()
	if r.code != 0 {
		t.Fatalf("renew: exit %d", r.code)
	}
	t.Logf("timing: renewal of 3 control planes %s; %d requests through lb1, %d failed", r.took.Round(time.Second), ok+failed, failed)
	if failed != 0 || ok < 10 {
		t.Errorf("%d of %d requests through lb1 failed during the renewal:\n%s", failed, ok+failed, strings.Join(errs, "\n"))
	}
	renewed := served()
	for k, na := range renewed {
		if !na.After(old[k]) {
			t.Errorf("%s serves a certificate with NotAfter %s, not later than before (%s)", k, na, old[k])
		}
	}
	for _, cp := range cps {
		for _, line := range strings.Split(strings.TrimSpace(labExecIn(t, l, cp, "stat -c '%a %n' /var/lib/kbootstrap/certs-backup/*.tar.gz")), "\n") {
			if !strings.HasPrefix(line, "600 ") {
				t.Errorf("%s: backup not 0600: %s", cp, line)
			}
		}
	}
	if _, err := hostKubectl(kubeconfig, "get", "nodes"); err != nil {
		t.Errorf("refreshed kubeconfig: %v", err)
	}

	// (c) a second run, with a window that excludes the new certificates.
	for _, cp := range cps {
		before[cp] = pkiSum(cp)
	}
	r = kbRun(t, nil, "-i", inv, "certs", "renew", "--if-expiring-within", "24h")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to renew") {
		t.Errorf("second renew: exit %d, not a no-op", r.code)
	}
	for _, cp := range cps {
		if pkiSum(cp) != before[cp] {
			t.Errorf("%s: the second run changed /etc/kubernetes", cp)
		}
	}

	// (d) a lock held by a live run on cp1: refused, nothing changed.
	labExecIn(t, l, "cp1", `printf 'kbootstrap-certs-renew id=live host=other pid=1 heartbeat=%s\n' "$(date +%s)" > /var/lib/kbootstrap/certs-renew.lock`)
	r = kbRun(t, nil, "-i", inv, "certs", "renew", "--if-expiring-within", "30d")
	if r.code != 2 || !strings.Contains(r.stderr, "locked by another renewal") || pkiSum("cp1") != before["cp1"] {
		t.Errorf("renew with cp1 locked by a live run: exit %d", r.code)
	}
	// A stale lock (its run died long ago) is taken over, and said so.
	labExecIn(t, l, "cp1", `printf 'kbootstrap-certs-renew id=dead host=other pid=1 heartbeat=1\n' > /var/lib/kbootstrap/certs-renew.lock`)

	// (e) a renewal that fails on cp2.
	labExecIn(t, l, "cp2", `k=$(command -v kubeadm) && mv "$k" "$k.real" && printf '#!/bin/sh\nexit 1\n' > "$k" && chmod 755 "$k"`)
	restore := sync.OnceFunc(func() { labExecIn(t, l, "cp2", `k=$(command -v kubeadm.real) && mv -f "$k" "${k%.real}"`) })
	t.Cleanup(restore)
	r = kbRun(t, nil, "-i", inv, "certs", "renew", "--if-expiring-within", "30d", "--kubeconfig-out", kubeconfig)
	restore()
	if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "cp2") || !strings.Contains(r.stdout+r.stderr, "restored") {
		t.Errorf("renew failing on cp2: exit %d, want 2 naming cp2 and the restore", r.code)
	}
	t.Logf("timing: renewal failing on cp2 %s", r.took.Round(time.Second))
	if !strings.Contains(r.stdout, "cp1: took over a stale lock") {
		t.Errorf("the stale lock on cp1 was not taken over, or silently")
	}
	for _, cp := range cps {
		if out := labExecIn(t, l, cp, "ls /var/lib/kbootstrap/certs-renew.lock 2>&1 || true"); !strings.Contains(out, "No such file") {
			t.Errorf("%s: lock left behind: %s", cp, out)
		}
	}
	if pkiSum("cp1") == before["cp1"] {
		t.Errorf("cp1 was not renewed before cp2 failed")
	}
	for _, cp := range []string{"cp2", "cp3"} {
		if pkiSum(cp) != before[cp] {
			t.Errorf("%s: /etc/kubernetes changed", cp)
		}
	}
	waitUntil(t, "cluster healthy after the failed renewal", 60*time.Second, healthy)
}

type kubeconfigData struct {
	Server                                string
	CAData, ClientCertData, ClientKeyData []byte
}

// kubeconfigFields reads the one cluster and user of a kubeconfig written
// by kbootstrap.
func kubeconfigFields(t *testing.T, raw []byte) kubeconfigData {
	t.Helper()
	var kc kubeconfigData
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		dec := func() []byte {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				t.Fatalf("kubeconfig %s: %v", k, err)
			}
			return b
		}
		switch k {
		case "server":
			kc.Server = v
		case "certificate-authority-data":
			kc.CAData = dec()
		case "client-certificate-data":
			kc.ClientCertData = dec()
		case "client-key-data":
			kc.ClientKeyData = dec()
		}
	}
	return kc
}
