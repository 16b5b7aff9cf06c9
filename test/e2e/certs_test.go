package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

// certsSpec is a lab of its own: the test writes PKIs into the nodes'
// /etc/kubernetes, which must not disturb the clusters other tests build on
// the shared lab.
var certsSpec = labSpec{
	id: "certs", subnet: "10.83.0.0/24", subnet2: "10.84.0.0/24", dedicated: true,
	nodes: []lab.NodeSpec{{Name: "cp1", Role: "control-plane"}, {Name: "cp2", Role: "control-plane"}, {Name: "cp3", Role: "control-plane"}},
}

// caFiles are what kubeadm join --control-plane copies from the first
// control plane (through upload-certs).
const caFiles = "ca.crt ca.key front-proxy-ca.crt front-proxy-ca.key etcd/ca.crt etcd/ca.key sa.key sa.pub"

// kubeadmPKI writes a control plane's PKI, kubeconfigs and manifests on a
// lab node with the node's own kubeadm. caTarB64, when not empty, is a
// base64 tar of caFiles installed first, as a join would.
func kubeadmPKI(t *testing.T, l *lab.Lab, name, address, endpoint, caTarB64 string) {
	t.Helper()
	cfg := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: %s, bindPort: 6443}
nodeRegistration: {name: %s, criSocket: "unix:///run/containerd/containerd.sock", imagePullPolicy: Never}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.34.4
controlPlaneEndpoint: %s
`, address, name, endpoint)
	script := "set -e\nrm -rf /etc/kubernetes\nmkdir -p /etc/kubernetes/pki /root/kbootstrap-certs\n" +
		"cat > /root/kbootstrap-certs/cfg.yaml <<'EOF'\n" + cfg + "EOF\n"
	if caTarB64 != "" {
		script += "echo " + caTarB64 + " | base64 -d | tar -C /etc/kubernetes/pki -xzf -\n"
	}
	for _, phase := range []string{"certs all", "kubeconfig all", "control-plane all", "etcd local"} {
		script += "/opt/kbootstrap/bin/kubeadm init phase " + phase + " --config /root/kbootstrap-certs/cfg.yaml >/dev/null\n"
	}
	if caTarB64 != "" {
		// A joined control plane has no super-admin.conf.
		script += "rm -f /etc/kubernetes/super-admin.conf\n"
	}
	labExecIn(t, l, name, script)
}

type certsFinding struct {
	Node, Check, File, Severity, Message string
}

func parseFindings(t *testing.T, stdout string) []certsFinding {
	t.Helper()
	var doc struct {
		Findings []certsFinding `json:"findings"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("certs check -o json is not JSON: %v\n%s", err, stdout)
	}
	if len(doc.Findings) == 0 {
		t.Fatalf("no findings:\n%s", stdout)
	}
	return doc.Findings
}

// noFails: nothing failed and the only warnings are super-admin.conf's.
func noFails(t *testing.T, fs []certsFinding) {
	t.Helper()
	for _, f := range fs {
		if f.Severity == "fail" || f.Severity == "warn" && f.File != "super-admin.conf" {
			t.Errorf("%s %s %s %s: %s", f.Severity, f.Node, f.Check, f.File, f.Message)
		}
	}
}

// verdicts reduces findings to node/check/file → severity (messages name
// paths that differ between sources).
func verdicts(fs []certsFinding, nodeName string, skip func(check string) bool) map[string]string {
	out := map[string]string{}
	for _, f := range fs {
		if f.Node != nodeName || skip(f.Check) {
			continue
		}
		k := f.Check + " " + f.File
		if prev, ok := out[k]; !ok || prev == "ok" {
			out[k] = f.Severity
		}
	}
	return out
}

func TestCertsCheck(t *testing.T) {
	l := labFor(t, certsSpec)
	if strings.TrimSpace(labExecIn(t, l, "cp1", "test -x /opt/kbootstrap/bin/kubeadm && echo yes || echo no")) != "yes" {
		t.Skip("kubeadm binary not built: run make lab-artifacts")
	}
	endpoint := l.Nodes[0].Addresses[0] + ":6443" // the inventory's default controlPlaneEndpoint
	kubeadmPKI(t, l, "cp1", l.Nodes[0].Addresses[0], endpoint, "")
	cas := strings.TrimSpace(labExecIn(t, l, "cp1", "tar -C /etc/kubernetes/pki -czf - "+caFiles+" | base64 -w0"))
	for _, n := range l.Nodes[1:] {
		kubeadmPKI(t, l, n.Name, n.Addresses[0], endpoint, cas)
	}

	var remote []certsFinding
	t.Run("clean", func(t *testing.T) {
		stdout, _, code := kb(t, "-i", l.InventoryFile, "certs", "check", "-o", "json")
		remote = parseFindings(t, stdout)
		noFails(t, remote)
		if code != 1 { // super-admin.conf on cp1 is a warning
			t.Errorf("exit %d, want 1 (the super-admin.conf warning)", code)
		}
		nodes := map[string]bool{}
		for _, f := range remote {
			nodes[f.Node] = true
		}
		if len(nodes) != 3 {
			t.Errorf("findings for %v, want cp1, cp2, cp3", nodes)
		}
	})

	t.Run("table and prom", func(t *testing.T) {
		stdout, _, code := kb(t, "-i", l.InventoryFile, "certs", "check")
		if code != 1 || !strings.Contains(stdout, "RESIDUAL TIME") || strings.Count(stdout, "apiserver.crt") < 3 {
			t.Errorf("table (exit %d):\n%s", code, stdout)
		}
		out := filepath.Join(t.TempDir(), "kbootstrap_pki.prom")
		_, _, code = kb(t, "-i", l.InventoryFile, "certs", "check", "--format", "prom", "--out", out)
		b, err := os.ReadFile(out)
		if err != nil || code != 1 {
			t.Fatalf("--out: exit %d, %v", code, err)
		}
		if !strings.Contains(string(b), `kbootstrap_pki_certificate_expiry_timestamp_seconds{node="cp3",file="etcd/peer.crt"`) {
			t.Errorf("prom file:\n%s", b)
		}
	})

	t.Run("through sudo as vagrant", func(t *testing.T) {
		inv := inventoryFor(t, l, l.KnownHostsFile, "vagrant", labNodes(t, l))
		stdout, _, code := kb(t, "-i", inv, "certs", "check", "-o", "json")
		fs := parseFindings(t, stdout)
		noFails(t, fs)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		skip := func(string) bool { return false }
		for _, n := range []string{"cp1", "cp2", "cp3"} {
			if a, b := verdicts(remote, n, skip), verdicts(fs, n, skip); !equalMaps(a, b) {
				t.Errorf("%s: root and vagrant+sudo differ:\n%s", n, diffMaps(a, b))
			}
		}
	})

	t.Run("local copy agrees with remote", func(t *testing.T) {
		dir := t.TempDir()
		tarB64 := strings.TrimSpace(labExecIn(t, l, "cp2", "tar -C /etc/kubernetes -czf - . | base64 -w0"))
		cmd := exec.Command("sh", "-c", "base64 -d | tar -C "+dir+" -xzpf -")
		cmd.Stdin = strings.NewReader(tarB64)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("untar: %v\n%s", err, out)
		}
		stdout, _, code := kb(t, "certs", "check", "--pki-dir", filepath.Join(dir, "pki"), "-o", "json")
		local := parseFindings(t, stdout)
		noFails(t, local)
		if code != 0 {
			t.Errorf("exit %d, want 0 (cp2 joined: no super-admin.conf)", code)
		}
		// The kubelet's directory is audited on remote nodes only.
		cluster := func(c string) bool {
			return strings.HasPrefix(c, "cluster.") || c == "etcd.mode" || c == "kubelet.serving"
		}
		if a, b := verdicts(remote, "cp2", cluster), verdicts(local, "cp2", cluster); !equalMaps(a, b) {
			t.Errorf("remote and local verdicts differ for cp2:\n%s", diffMaps(a, b))
		}
	})

	t.Run("cp2 with a CA of its own", func(t *testing.T) {
		kubeadmPKI(t, l, "cp2", l.Nodes[1].Addresses[0], endpoint, "")
		t.Cleanup(func() { kubeadmPKI(t, l, "cp2", l.Nodes[1].Addresses[0], endpoint, cas) })
		stdout, _, code := kb(t, "-i", l.InventoryFile, "certs", "check", "-o", "json")
		fs := parseFindings(t, stdout)
		if code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
		found := false
		for _, f := range fs {
			if f.Node == "cp2" && f.Check == "cluster.same-ca" && f.File == "ca.crt" && f.Severity == "fail" {
				found = true
			}
			if f.Severity == "fail" && f.Node != "cp2" {
				t.Errorf("fail on %s: %s %s: %s", f.Node, f.Check, f.File, f.Message)
			}
		}
		if !found {
			t.Errorf("no cluster.same-ca fail on cp2 ca.crt:\n%s", stdout)
		}
	})

	t.Run("unreachable node", func(t *testing.T) {
		nodes := labNodes(t, l)
		nodes = append(nodes, invNode{Name: "cp4", Address: "10.83.0.99", Role: "control-plane"})
		inv := inventoryFor(t, l, l.KnownHostsFile, "root", nodes)
		stdout, stderr, code := kb(t, "-i", inv, "--connect-timeout", "3s", "certs", "check", "-o", "json")
		if code != 2 || !strings.Contains(stderr, "node cp4") {
			t.Errorf("exit %d, stderr %q: want 2 and an error naming cp4", code, stderr)
		}
		fs := parseFindings(t, stdout)
		seen := map[string]bool{}
		for _, f := range fs {
			seen[f.Node] = true
		}
		if !seen["cp1"] || !seen["cp4"] {
			t.Errorf("findings for %v: the reachable nodes' results must be kept", seen)
		}
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func diffMaps(a, b map[string]string) string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if a[k] != b[k] {
			out = append(out, fmt.Sprintf("  %s: %q vs %q", k, a[k], b[k]))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
