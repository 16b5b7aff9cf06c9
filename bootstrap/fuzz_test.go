package bootstrap

import (
	"net/netip"
	"testing"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
)

// FuzzParseFacts: whatever a node prints, facts parse without panicking.
func FuzzParseFacts(f *testing.F) {
	f.Add("os=debian\nkubeadm=v1.34.4\nruntime=1\ncgroup=systemd\nswap=0\nports=6443 2379\ntime=1700000000.25\n")
	f.Add("time=1e400\nports=-1 99999999999999999999\nswap=\n=\n")
	f.Add("time=NaN\ntime=-9e18\n")
	f.Fuzz(func(t *testing.T, out string) {
		fs := parseFacts(out, inventory.Node{Name: "cp1", Role: inventory.RoleControlPlane}, time.Unix(1700000000, 0))
		if fs == nil || fs.Node != "cp1" {
			t.Fatalf("parseFacts = %+v", fs)
		}
	})
}

// FuzzParseNodes: the Node list from the API parses without panicking, and
// every podCIDR and InternalIP it lets through parses as one.
func FuzzParseNodes(f *testing.F) {
	f.Add([]byte(`{"items":[{"metadata":{"name":"cp1"},"spec":{"podCIDR":"10.244.0.0/24"},"status":{"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"10.0.0.1"}]}}]}`))
	f.Add([]byte(`{"items":[{"metadata":{"name":"w1"},"spec":{"podCIDR":"1.2.3.4/33; reboot"}}]}`))
	f.Add([]byte(`{"items":null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		nodes, err := parseNodes(raw)
		if err != nil {
			return
		}
		for name, n := range nodes {
			if n.PodCIDR != "" {
				if _, err := netip.ParsePrefix(n.PodCIDR); err != nil {
					t.Fatalf("node %s: podCIDR %q let through", name, n.PodCIDR)
				}
			}
			if n.InternalIP != "" {
				if _, err := netip.ParseAddr(n.InternalIP); err != nil {
					t.Fatalf("node %s: InternalIP %q let through", name, n.InternalIP)
				}
			}
		}
	})
}

// FuzzRuntimeFailure: the kubelet's journal parses without panicking.
func FuzzRuntimeFailure(f *testing.F) {
	f.Add(`E1129 "RunPodSandbox from runtime service failed" err="OCI runtime create failed: runc create failed: x"` + "\n")
	f.Add("runc create failed\"\\\n\n")
	f.Fuzz(func(t *testing.T, journal string) {
		n, msg := runtimeFailure(journal)
		if n < 0 || (n == 0) != (msg == "") {
			t.Fatalf("runtimeFailure = %d, %q", n, msg)
		}
	})
}
