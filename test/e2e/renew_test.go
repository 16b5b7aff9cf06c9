package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// renewSpec is the lab of `kbootstrap certs renew`: three control planes
// behind a load balancer, no worker.
var renewSpec = labSpec{
	id: "renew", subnet: "10.95.0.0/24", subnet2: "10.76.0.0/24", kubernetes: true, dedicated: true,
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

// apiPoller asks the API through the load balancer every 0.5 s with
// client-go's REST client, as kubectl and controllers do: it retries a GET
// whose connection was lost and a 503 that carries Retry-After (an API
// server shutting down), so failed counts what a Kubernetes client sees.
// retried counts the responses and transport errors it retried.
type apiPoller struct {
	*poller
	retried atomic.Int64
	mu      sync.Mutex
	retries []string
}

// poller calls a request every 0.5 s until stopped and counts the outcomes.
type poller struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       sync.WaitGroup
}

func startPolling(request func() error) *poller {
	p := &poller{stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			start := time.Now()
			if err := request(); err != nil {
				p.failed.Add(1)
				p.mu.Lock()
				p.errs = append(p.errs, fmt.Sprintf("%s (%s) %v", start.Format("15:04:05.000"), time.Since(start).Round(time.Millisecond), err))
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

// Stop ends the polling and returns its counts.
func (p *poller) Stop() (ok, failed int64, errs []string) {
	close(p.stop)
	p.done.Wait()
	return p.ok.Load(), p.failed.Load(), p.errs
}

// countingTransport records every transport error and 5xx under the
// client's retries.
type countingTransport struct {
	rt http.RoundTripper
	p  *apiPoller
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	what := ""
	switch {
	case err != nil:
		what = err.Error()
	case resp.StatusCode >= 500:
		// The body says why (an API server's Status: which etcd error);
		// the client cannot decode it with its empty scheme.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
		what = resp.Status + " Retry-After=" + resp.Header.Get("Retry-After") + " " + string(bytes.TrimSpace(body))
	}
	if what != "" {
		c.p.retried.Add(1)
		c.p.mu.Lock()
		c.p.retries = append(c.p.retries, time.Now().Format("15:04:05.000")+" "+what)
		c.p.mu.Unlock()
	}
	return resp, err
}

func pollAPI(t *testing.T, kubeconfig string) *apiPoller {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	p := &apiPoller{}
	cfg.Timeout = 10 * time.Second
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(runtime.NewScheme()).WithoutConversion()
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt: rt, p: p} }
	client, err := rest.UnversionedRESTClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.poller = startPolling(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := client.Get().AbsPath("/api/v1/namespaces/default").DoRaw(ctx)
		return err
	})
	return p
}

// StopLog ends the polling and returns its counts; it logs what the client
// retried.
func (p *apiPoller) StopLog(t *testing.T) (ok, failed int64, errs []string) {
	ok, failed, errs = p.Stop()
	if n := p.retried.Load(); n > 0 {
		t.Logf("the client retried %d responses or transport errors:\n%s", n, strings.Join(p.retries, "\n"))
	}
	return ok, failed, errs
}

// pollStrict is a client with no patience: a new connection for every
// request, 2 s for it, no retry, every 0.5 s — as a monitoring probe or a CI
// job calling kubectl --request-timeout=2s. It asks url (/livez through the
// load balancer, open to anonymous clients).
func pollStrict(url string) *poller {
	return startPolling(func() error {
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // availability only: served certificates are checked apart
		}}
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	})
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
	dir := t.TempDir()
	all := []string{"lb1", "cp1", "cp2", "cp3"}
	waitSystemd(t, l, all...)
	inv := kubernetesInventory(t, l, dir, "kbootstrap.yaml", "renew", "certificateValidity: 48h\n", all...)
	addr := map[string]string{}
	for _, name := range all {
		n, _ := l.Node(name)
		addr[name] = n.Addresses[0]
	}

	r := prepareNodes(t, inv)
	kubeconfig := filepath.Join(dir, "renew.kubeconfig")
	r = kbRun(t, nil, "-i", inv, "init", "--kubeconfig-out", kubeconfig)
	cps := []string{"cp1", "cp2", "cp3"}
	if r.code != 0 {
		logInitFailure(t, l, []string{"lb1"}, cps)
		t.Fatalf("init: exit %d", r.code)
	}
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

	// (0) On a cluster init formed, every kubeconfig's server and each
	// kubelet's own serving certificate pass certs check (the 48 h
	// certificates fail it, for their expiry).
	r = kbRun(t, nil, "-i", inv, "certs", "check", "-o", "json")
	seen := map[string]int{}
	for _, f := range parseFindings(t, r.stdout) {
		if f.Check == "kubeconfig.server" || f.Check == "kubelet.serving" || strings.HasPrefix(f.File, "/var/lib/kubelet/pki/") {
			seen[f.Node+" "+f.Check]++
			if f.Severity != "ok" {
				t.Errorf("certs check: %s %s %s %s: %s", f.Node, f.Severity, f.Check, f.File, f.Message)
			}
		}
	}
	for _, cp := range cps {
		for _, c := range []string{"kubeconfig.server", "kubelet.serving", "cert.expiry", "cert.key-match", "file.mode"} {
			if seen[cp+" "+c] == 0 {
				t.Errorf("certs check: no %s finding on %s:\n%s", c, cp, r.stdout)
			}
		}
	}

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

	// (b) renewal of the 3 control planes, the API polled throughout by a
	// Kubernetes client and by a strict one; the drain goes through lb1's
	// haproxy runtime API.
	old := served()
	livez := "https://" + net.JoinHostPort(addr["lb1"], "6443") + "/livez"
	poll := pollAPI(t, kubeconfig)
	strict := pollStrict(livez)
	r = kbRun(t, nil, "-i", inv, "certs", "renew", "--if-expiring-within", "30d", "--kubeconfig-out", kubeconfig)
	ok, failed, errs := poll.StopLog(t)
	sok, sfailed, serrs := strict.Stop()
	if r.code != 0 {
		t.Fatalf("renew: exit %d", r.code)
	}
	t.Logf("timing: renewal of 3 control planes %s (%s per control plane); %d requests through lb1, %d failed; strict client: %d requests, %d failed",
		r.took.Round(time.Second), (r.took / 3).Round(time.Second), ok+failed, failed, sok+sfailed, sfailed)
	if sfailed != 0 || sok < 10 {
		t.Errorf("strict client (new connection, 2 s, no retry): %d of %d requests through lb1 failed during the renewal:\n%s", sfailed, sok+sfailed, strings.Join(serrs, "\n"))
	}
	if n := strings.Count(r.stdout, "draining the API server (haproxy's runtime API on lb1)"); n != 3 {
		t.Errorf("%d drains through lb1's haproxy, want 3:\n%s", n, r.stdout)
	}
	// No private key reaches the output: neither a PEM header nor a line of
	// the renewed keys.
	noKeys := func(what, out string) {
		t.Helper()
		if strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("%s: a PEM private key header in the output", what)
		}
		for _, cp := range cps {
			for _, line := range strings.Split(labExecIn(t, l, cp, "sed -n 2p /etc/kubernetes/pki/apiserver.key /etc/kubernetes/pki/etcd/server.key /etc/kubernetes/pki/sa.key"), "\n") {
				if len(line) > 40 && strings.Contains(out, line) {
					t.Errorf("%s: a line of %s's private keys in the output", what, cp)
				}
			}
		}
	}
	noKeys("renew", r.stdout+r.stderr)
	if failed != 0 || ok < 10 {
		t.Errorf("%d of %d requests through lb1 failed during the renewal:\n%s", failed, ok+failed, strings.Join(errs, "\n"))
	}
	for _, cp := range cps {
		if !strings.Contains(r.stdout, cp+": kubelet.conf: the kubelet rotates its client certificate (/var/lib/kubelet/pki/kubelet-client-current.pem") {
			t.Errorf("%s: the renewal did not check that the kubelet rotates its certificate", cp)
		}
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

	// (b2) one control plane's API server restarted by the drain alone
	// (--certs apiserver restarts nothing else): the strict client again.
	strict = pollStrict(livez)
	r = kbRun(t, nil, "-i", inv, "--host", "cp2", "certs", "renew", "--certs", "apiserver", "--if-expiring-within", "30d", "--kubeconfig-out", kubeconfig)
	sok, sfailed, serrs = strict.Stop()
	t.Logf("timing: cp2's API server drained, restarted and undrained in %s; strict client: %d requests, %d failed", r.took.Round(time.Second), sok+sfailed, sfailed)
	if r.code != 0 || sfailed != 0 {
		t.Errorf("cp2's API server alone: exit %d; strict client: %d of %d failed:\n%s", r.code, sfailed, sok+sfailed, strings.Join(serrs, "\n"))
	}

	// (c) a second run, with a window that excludes the new certificates.
	for _, cp := range cps {
		before[cp] = pkiSum(cp)
	}
	r = kbRun(t, nil, "-i", inv, "certs", "renew", "--if-expiring-within", "24h", "--kubeconfig-out", kubeconfig)
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
	r = kbRun(t, nil, "-i", inv, "certs", "renew", "--if-expiring-within", "30d", "--kubeconfig-out", kubeconfig)
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
	noKeys("renew failing on cp2", r.stdout+r.stderr)
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

	// (f) two runs at once never renew a node twice: each node is backed up
	// (and renewed) by one run only; the other finds it locked or renewed.
	// --certs scheduler.conf restarts kube-scheduler only.
	runs := make([]result, 2)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = kbRun(t, nil, "-i", inv, "certs", "renew", "--certs", "scheduler.conf", "--if-expiring-within", "30d", "--kubeconfig-out", filepath.Join(dir, fmt.Sprintf("run%d.kubeconfig", i)))
		}()
	}
	wg.Wait()
	for _, cp := range cps {
		backedUp := cp + ": backup /var/lib/kbootstrap/certs-backup/"
		n := strings.Count(runs[0].stdout, backedUp) + strings.Count(runs[1].stdout, backedUp)
		if n != 1 {
			t.Errorf("two concurrent runs backed up and renewed %s %d times, want once", cp, n)
		}
	}
	for i, r := range runs {
		if r.code != 0 && !(r.code == 2 && strings.Contains(r.stderr, "locked by another renewal")) {
			t.Errorf("concurrent run %d: exit %d, neither a success nor a refusal of a locked node", i, r.code)
		}
	}
	waitUntil(t, "cluster healthy after the concurrent runs", 60*time.Second, healthy)

	// (f2) two runs never renew two control planes at once, even on
	// different nodes: a run holding the cluster's etcd lock (here a holder
	// key under a 60 s lease, as etcd's concurrency.Mutex and `etcdctl lock`
	// write it) makes a renewal of cp3 refuse before any change.
	etcdctl := func(args ...string) string {
		out, err := hostKubectl(kubeconfig, append([]string{"-n", "kube-system", "exec", "etcd-cp1", "--", "etcdctl", "--endpoints", "https://127.0.0.1:2379",
			"--cacert", "/etc/kubernetes/pki/etcd/ca.crt", "--cert", "/etc/kubernetes/pki/etcd/server.crt", "--key", "/etc/kubernetes/pki/etcd/server.key"}, args...)...)
		if err != nil {
			t.Fatalf("etcdctl %v: %v: %s", args, err, out)
		}
		return out
	}
	var lease string
	if f := strings.Fields(etcdctl("lease", "grant", "60")); len(f) >= 2 && f[0] == "lease" {
		lease = f[1]
	} else {
		t.Fatalf("etcdctl lease grant: no lease id")
	}
	etcdctl("put", "--lease="+lease, "/kbootstrap/certs-renew/"+lease, "")
	before["cp3"] = pkiSum("cp3")
	r = kbRun(t, nil, "-i", inv, "--host", "cp3", "certs", "renew", "--certs", "scheduler.conf", "--if-expiring-within", "30d", "--kubeconfig-out", kubeconfig)
	etcdctl("lease", "revoke", lease)
	if r.code != 2 || !strings.Contains(r.stderr, "another run is renewing a control plane of this cluster") || pkiSum("cp3") != before["cp3"] {
		t.Errorf("renew of cp3 while another run holds the cluster lock: exit %d, want 2 and cp3 unchanged\n%s", r.code, r.stderr)
	}
	if out := etcdctl("get", "--prefix", "--keys-only", "/kbootstrap/certs-renew"); strings.TrimSpace(out) != "" {
		t.Errorf("cluster lock keys left in etcd: %q", out)
	}

	// (f3) SIGTERM (systemctl stop, a shutdown) while cp2's API server is
	// being drained and restarted: the run puts cp2 back before it ends
	// (back in haproxy's rotation, serving the certificate on its disk).
	var signalled atomic.Bool
	r = kbRunProc(t, nil, func(line string, p *os.Process) {
		if strings.Contains(line, "cp2: draining the API server") && signalled.CompareAndSwap(false, true) {
			// Within the drain, or the restart that follows it.
			time.AfterFunc(1500*time.Millisecond, func() { p.Signal(syscall.SIGTERM) })
		}
	}, "-i", inv, "--host", "cp2", "certs", "renew", "--certs", "apiserver", "--if-expiring-within", "30d", "--kubeconfig-out", kubeconfig)
	if !signalled.Load() {
		t.Fatalf("the renewal of cp2 never drained its API server: exit %d\n%s", r.code, r.stderr)
	}
	if r.code != 2 || !strings.Contains(r.stderr, "context canceled") {
		t.Errorf("renewal stopped by SIGTERM: exit %d, want 2 saying it was cancelled\n%s", r.code, r.stderr)
	}
	t.Logf("timing: renewal interrupted by SIGTERM ended (cp2 put back) %s after it started", r.took.Round(time.Second))
	if out := labExecIn(t, l, "cp2", `test -f /etc/kubernetes/manifests/kube-apiserver.yaml && echo manifest; ls /etc/kubernetes/kbootstrap-aside/ 2>/dev/null | grep -c yaml || true
iptables -w -C INPUT -p tcp --dport 6443 --syn ! -i lo -j REJECT --reject-with tcp-reset 2>/dev/null && echo drained || echo undrained`); out != "manifest\n0\nundrained\n" {
		t.Errorf("cp2 after the interrupted renewal:\n%s", out)
	}
	if out := labExecIn(t, l, "lb1", `echo "show stat" | socat stdio UNIX-CONNECT:/run/haproxy-kbootstrap.sock | awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "status") s = i } $1 == "control-planes" && $2 == "cp2" { print $s }'`); strings.TrimSpace(out) != "UP" {
		t.Errorf("lb1's haproxy sees cp2 %q after the interrupted renewal, want UP (back in rotation)", strings.TrimSpace(out))
	}
	waitUntil(t, "cluster healthy after the interrupted renewal", 2*time.Minute, healthy)
	waitUntil(t, "cp2 serves the certificate on its disk", time.Minute, func() error {
		served, err := servedNotAfter(net.JoinHostPort(addr["cp2"], "6443"))
		if err != nil {
			return err
		}
		block, _ := pem.Decode([]byte(labExecIn(t, l, "cp2", "cat /etc/kubernetes/pki/apiserver.crt")))
		if block == nil {
			return errors.New("apiserver.crt: no PEM block")
		}
		disk, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return err
		}
		if !served.Equal(disk.NotAfter) {
			return fmt.Errorf("serves NotAfter %s, apiserver.crt says %s", served.UTC(), disk.NotAfter.UTC())
		}
		return nil
	})

	// (g) certs schedule installs the binary and a timer on every control
	// plane, spaced by --stagger; a second run changes nothing.
	sum := func(file string) string {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", sha256.Sum256(b))
	}
	r = kbRun(t, nil, "-i", inv, "certs", "schedule", "--within", "30d")
	if r.code != 0 || strings.Count(r.stdout, ": installed; next: ") != 3 {
		t.Fatalf("certs schedule: exit %d, want a timer installed on each control plane", r.code)
	}
	for i, cp := range cps {
		out := labExecIn(t, l, cp, `systemctl is-enabled kbootstrap-certs-renew.timer; systemctl is-active kbootstrap-certs-renew.timer
sha256sum /usr/local/bin/kbootstrap | cut -d' ' -f1; grep -h '^ExecStartPre=\|^ExecStart=' /etc/systemd/system/kbootstrap-certs-renew.service || true`)
		want := "enabled\nactive\n" + sum(kbBinary) + "\n"
		if i > 0 {
			want += fmt.Sprintf("ExecStartPre=/bin/sleep %d\n", i*1800)
		}
		want += "ExecStart=/usr/local/bin/kbootstrap certs renew --local --if-expiring-within 30d --textfile /var/lib/node_exporter/textfile_collector/kbootstrap_certs_renew.prom\n"
		if out != want {
			t.Errorf("%s: timer, binary and service:\n%s\nwant\n%s", cp, out, want)
		}
	}
	r = kbRun(t, nil, "-i", inv, "certs", "schedule", "--within", "30d")
	if r.code != 0 || strings.Count(r.stdout, ": unchanged; next: ") != 3 {
		t.Errorf("second certs schedule: exit %d, want every timer unchanged", r.code)
	}

	// (h) the timer fires: on cp1, a calendar 20 s ahead with no delay; its
	// run (certs renew --local) renews cp1 and writes the textfile.
	at := strings.TrimSpace(labExecIn(t, l, "cp1", "date -d '+20 seconds' '+%Y-%m-%d %H:%M:%S'"))
	old = served()
	r = kbRun(t, nil, "-i", inv, "--host", "cp1", "certs", "schedule", "--within", "30d", "--on-calendar", at, "--stagger", "0")
	if r.code != 0 || !strings.Contains(r.stdout, "cp1: systemd timer kbootstrap-certs-renew.timer ("+at) {
		t.Fatalf("certs schedule on cp1 at %s: exit %d", at, r.code)
	}
	const textfile = "/var/lib/node_exporter/textfile_collector/kbootstrap_certs_renew.prom"
	poll = pollAPI(t, kubeconfig)
	strict = pollStrict(livez)
	waitUntil(t, "cp1's timer ran the renewal", 12*time.Minute, func() error {
		out, err := l.Exec(context.Background(), "cp1", "sh", "-c", "systemctl is-active kbootstrap-certs-renew.service; cat "+textfile)
		if !strings.Contains(string(out), "kbootstrap_certs_renew_last_run_timestamp_seconds") || strings.HasPrefix(string(out), "activ") {
			return fmt.Errorf("not yet: %v: %s", err, out)
		}
		return nil
	})
	ok, failed, errs = poll.StopLog(t)
	sok, sfailed, serrs = strict.Stop()
	t.Logf("timing: %d requests through lb1 during the timer's renewal, %d failed; strict client: %d, %d failed", ok+failed, failed, sok+sfailed, sfailed)
	// Run on cp1 itself, the renewal cannot reach lb1's runtime API: it
	// drains with the firewall rule, and haproxy (option redispatch) sends
	// a refused connection to another control plane at once.
	if sfailed != 0 {
		t.Errorf("strict client: %d of %d requests through lb1 failed during the timer's renewal:\n%s", sfailed, sok+sfailed, strings.Join(serrs, "\n"))
	}
	if failed != 0 {
		t.Errorf("%d of %d requests through lb1 failed during the timer's renewal:\n%s", failed, ok+failed, strings.Join(errs, "\n"))
	}
	prom := labExecIn(t, l, "cp1", "cat "+textfile+"; journalctl -u kbootstrap-certs-renew.service --no-pager -o cat | tail -n 30")
	for _, want := range []string{"kbootstrap_certs_renew_last_run_success 1", `kbootstrap_certs_renew_last_run_result{result="renewed"} 1`, "kbootstrap_certs_renew_last_run_renewed_nodes 1"} {
		if !strings.Contains(prom, want) {
			t.Errorf("cp1's textfile after the timer's run lacks %q:\n%s", want, prom)
		}
	}
	now := served()
	for _, k := range []string{"cp1:6443", "cp1:2379"} {
		if !now[k].After(old[k]) {
			t.Errorf("%s: the timer's renewal left NotAfter %s (before: %s)", k, now[k], old[k])
		}
	}
	for _, k := range []string{"cp2:6443", "cp3:6443"} {
		if !now[k].Equal(old[k]) {
			t.Errorf("%s changed during cp1's local renewal", k)
		}
	}

	// (i) --local --dry-run on cp2 changes nothing.
	before["cp2"] = pkiSum("cp2")
	out := labExecIn(t, l, "cp2", "/usr/local/bin/kbootstrap certs renew --local --dry-run --if-expiring-within 30d")
	if !strings.Contains(out, "cp2: would renew") || pkiSum("cp2") != before["cp2"] {
		t.Errorf("certs renew --local --dry-run on cp2:\n%s", out)
	}

	// (j) --remove takes the timers away.
	r = kbRun(t, nil, "-i", inv, "certs", "schedule", "--remove")
	if r.code != 0 || strings.Count(r.stdout, "renewal schedule removed") != 3 {
		t.Errorf("certs schedule --remove: exit %d", r.code)
	}
	for _, cp := range cps {
		if out := labExecIn(t, l, cp, "ls /etc/systemd/system/kbootstrap-certs-renew.* 2>&1; systemctl is-active kbootstrap-certs-renew.timer || true"); !strings.Contains(out, "No such file") || !strings.Contains(out, "inactive") {
			t.Errorf("%s: the timer is still there after --remove:\n%s", cp, out)
		}
	}
	waitUntil(t, "cluster healthy at the end", 60*time.Second, healthy)
}
