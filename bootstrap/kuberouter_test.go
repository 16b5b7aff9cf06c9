package bootstrap

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/internal/golden"
)

// The manifest init applies for kube-router, and each node's CNI
// configuration: golden files, and each a valid document of what it claims.
func TestKubeRouterManifest(t *testing.T) {
	m := KubeRouterManifest(KubeRouterImage)
	golden.Check(t, "kube-router.yaml", m)
	var kinds []string
	for _, doc := range bytes.Split(m, []byte("\n---\n")) {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("document %d: %v\n%s", len(kinds), err, doc)
		}
		kinds = append(kinds, obj.Kind+"/"+obj.Metadata.Name)
	}
	if got := strings.Join(kinds, " "); got != "ServiceAccount/kube-router ClusterRole/kube-router ClusterRoleBinding/kube-router DaemonSet/kube-router" {
		t.Errorf("manifest holds %s", got)
	}
	if !bytes.Contains(m, []byte("image: "+KubeRouterImage)) || !bytes.Contains(m, []byte("value: "+KubeRouterCNIConfigPath)) {
		t.Errorf("manifest lacks the image or the CNI configuration path")
	}

	c := KubeRouterCNIConfig("10.244.3.0/24")
	golden.Check(t, "10-kuberouter.conflist", c)
	var conf struct {
		Plugins []struct {
			Type, Bridge string
			IPAM         struct{ Ranges [][]struct{ Subnet string } }
		}
	}
	if err := json.Unmarshal(c, &conf); err != nil || len(conf.Plugins) != 2 || conf.Plugins[0].Bridge != "kube-bridge" || conf.Plugins[0].IPAM.Ranges[0][0].Subnet != "10.244.3.0/24" {
		t.Errorf("CNI configuration %+v: %v", conf, err)
	}
}

// A node's CNI configuration is kept when kube-router rewrote it (its JSON,
// the MTU added), rewritten when it is another network's or another CIDR's.
func TestKubeRouterCNICurrent(t *testing.T) {
	// As kube-router v2.1.0 rewrote it on a lab node.
	rewritten := `{"cniVersion":"0.3.0","name":"kubernetes","plugins":[{"bridge":"kube-bridge","hairpinMode":true,"ipam":{"ranges":[[{"subnet":"10.244.4.0/24"}]],"type":"host-local"},"isDefaultGateway":true,"mtu":1500,"name":"kubernetes","type":"bridge"},{"capabilities":{"portMappings":true},"snat":true,"type":"portmap"}]}`
	for _, tc := range []struct {
		name, have, cidr string
		want             bool
	}{
		{"as kbootstrap writes it", string(KubeRouterCNIConfig("10.244.4.0/24")), "10.244.4.0/24", true},
		{"as kube-router rewrites it", rewritten, "10.244.4.0/24", true},
		{"another pod CIDR", rewritten, "10.244.1.0/24", false},
		{"the subnet form", `{"plugins":[{"type":"bridge","bridge":"kube-bridge","ipam":{"type":"host-local","subnet":"10.244.4.0/24"}}]}`, "10.244.4.0/24", true},
		{"a second range", `{"plugins":[{"type":"bridge","bridge":"kube-bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.4.0/24"}],[{"subnet":"10.244.9.0/24"}]]}}]}`, "10.244.4.0/24", false},
		{"host-gw's bridge", `{"plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.244.4.0/24"}}]}`, "10.244.4.0/24", false},
		{"not JSON", "{", "10.244.4.0/24", false},
		{"empty", "", "10.244.4.0/24", false},
	} {
		if got := kubeRouterCNICurrent([]byte(tc.have), tc.cidr); got != tc.want {
			t.Errorf("%s: current %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The script that drops stale routes to a node's own pod CIDR, run by sh
// against an ip that lists a route through another node and the bridge's.
func TestDropStaleOwnRoute(t *testing.T) {
	dir := t.TempDir()
	ip := `#!/bin/sh
case "$*" in
"-4 route show exact 10.244.3.0/24") printf '10.244.3.0/24 via 10.77.0.14 dev eth0 proto 17 \n10.244.3.0/24 dev cni0 proto kernel scope link src 10.244.3.1\n' ;;
"-4 route del 10.244.3.0/24 via 10.77.0.14") echo "$*" >>"$LOG" ;;
*) echo "unexpected: ip $*" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "ip"), []byte(ip), 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "log")
	cmd := exec.Command("sh", "-c", dropStaleOwnRoute("10.244.3.0/24"))
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "LOG="+log)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != staleRoute+"\n" {
		t.Fatalf("script: %v: %q", err, out)
	}
	if b, _ := os.ReadFile(log); string(b) != "-4 route del 10.244.3.0/24 via 10.77.0.14\n" {
		t.Errorf("ip calls: %q", b)
	}
}
