package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
)

// Facts are what a run knows about one node before it changes anything.
type Facts struct {
	Node              string        `json:"node"`
	Role              string        `json:"role"`
	OS                string        `json:"os"`
	KubeadmVersion    string        `json:"kubeadmVersion"`
	KubeletVersion    string        `json:"kubeletVersion"`
	ContainerdVersion string        `json:"containerdVersion"`
	RuntimeUp         bool          `json:"runtimeUp"`
	CgroupDriver      string        `json:"cgroupDriver"` // from containerd's SystemdCgroup
	ControlPlane      bool          `json:"controlPlane"` // a kube-apiserver manifest is there
	Admin             bool          `json:"admin"`        // /etc/kubernetes/admin.conf is there
	Joined            bool          `json:"joined"`       // /etc/kubernetes/kubelet.conf is there
	Swap              bool          `json:"swap"`
	ListeningPorts    []int         `json:"listeningPorts"`
	ClockOffset       time.Duration `json:"clockOffset"` // node clock minus this machine's

	// From the cluster (when one exists).
	InCluster bool   `json:"inCluster"` // a Node object of this name exists
	Ready     bool   `json:"ready"`
	PodCIDR   string `json:"podCIDR"`
}

const factsScript = `[ -r /etc/os-release ] && . /etc/os-release
echo "os=${ID:-} ${VERSION_ID:-}"
echo "kubeadm=$(kubeadm version -o short 2>/dev/null)"
echo "kubelet=$(kubelet --version 2>/dev/null | awk '{print $2}')"
echo "containerd=$(containerd --version 2>/dev/null | awk '{print $3}')"
if [ -S /run/containerd/containerd.sock ] && { ! command -v systemctl >/dev/null || systemctl is-active -q containerd; }; then echo runtime=1; fi
if grep -Eq '^[[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*true' /etc/containerd/config.toml 2>/dev/null; then echo cgroup=systemd; else echo cgroup=cgroupfs; fi
[ -e /etc/kubernetes/manifests/kube-apiserver.yaml ] && echo controlplane=1
[ -e /etc/kubernetes/admin.conf ] && echo admin=1
[ -e /etc/kubernetes/kubelet.conf ] && echo joined=1
echo "swap=$(tail -n +2 /proc/swaps 2>/dev/null | grep -c .)"
echo "ports=$(ss -ltnH 2>/dev/null | awk '{n=split($4, a, ":"); print a[n]}' | sort -un | tr '\n' ' ')"
echo "time=$(date +%s.%N)"
`

// gatherFacts reads n's facts (one command).
func gatherFacts(ctx context.Context, n node.Node, in inventory.Node) (*Facts, error) {
	before := time.Now()
	res, err := n.Run(ctx, factsScript)
	after := time.Now()
	if err != nil {
		return nil, fmt.Errorf("gathering facts: %w", err)
	}
	return parseFacts(string(res.Stdout), in, before.Add(after.Sub(before)/2)), nil
}

// parseFacts reads factsScript's output; mid is when the node's clock was
// read, as this machine saw it.
func parseFacts(out string, in inventory.Node, mid time.Time) *Facts {
	f := &Facts{Node: in.Name, Role: string(in.Role)}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "os":
			f.OS = v
		case "kubeadm":
			f.KubeadmVersion = v
		case "kubelet":
			f.KubeletVersion = v
		case "containerd":
			f.ContainerdVersion = v
		case "runtime":
			f.RuntimeUp = true
		case "cgroup":
			f.CgroupDriver = v
		case "controlplane":
			f.ControlPlane = true
		case "admin":
			f.Admin = true
		case "joined":
			f.Joined = true
		case "swap":
			f.Swap = v != "" && v != "0"
		case "ports":
			for _, p := range strings.Fields(v) {
				if n, err := strconv.Atoi(p); err == nil {
					f.ListeningPorts = append(f.ListeningPorts, n)
				}
			}
		case "time":
			if secs, err := strconv.ParseFloat(v, 64); err == nil {
				remote := time.Unix(0, int64(secs*1e9))
				f.ClockOffset = remote.Sub(mid).Round(time.Millisecond)
			}
		}
	}
	return f
}

// nodeList is the part of `kubectl get nodes -o json` kbootstrap reads.
type nodeList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			PodCIDR string `json:"podCIDR"`
		} `json:"spec"`
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
			Addresses []struct {
				Type    string `json:"type"`
				Address string `json:"address"`
			} `json:"addresses"`
		} `json:"status"`
	} `json:"items"`
}

// clusterNode is one Node object.
type clusterNode struct {
	Name, PodCIDR, InternalIP string
	Ready                     bool
}

func parseNodes(b []byte) (map[string]clusterNode, error) {
	var l nodeList
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("kubectl get nodes: %w", err)
	}
	out := map[string]clusterNode{}
	for _, it := range l.Items {
		cn := clusterNode{Name: it.Metadata.Name, PodCIDR: it.Spec.PodCIDR}
		// The podCIDR goes into root scripts on every node: a CIDR or nothing.
		if cn.PodCIDR != "" {
			p, err := netip.ParsePrefix(cn.PodCIDR)
			if err != nil {
				return nil, fmt.Errorf("node %s: spec.podCIDR %q: %w", cn.Name, cn.PodCIDR, err)
			}
			cn.PodCIDR = p.Masked().String()
		}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				cn.Ready = true
			}
		}
		for _, a := range it.Status.Addresses {
			if a.Type == "InternalIP" {
				if _, err := netip.ParseAddr(a.Address); err != nil {
					return nil, fmt.Errorf("node %s: status.addresses InternalIP %q: %w", cn.Name, a.Address, err)
				}
				cn.InternalIP = a.Address
			}
		}
		out[cn.Name] = cn
	}
	return out, nil
}

// sameVersion compares versions with or without their leading v.
func sameVersion(a, b string) bool {
	return strings.TrimPrefix(a, "v") == strings.TrimPrefix(b, "v")
}

// preflight checks the facts of the nodes the run will change, and the
// cluster-wide rules, before anything changes. Every problem of every node
// is reported.
func preflight(inv *inventory.Inventory, facts map[string]*Facts, todo []inventory.Node) []error {
	var errs []error
	fail := func(n, format string, args ...any) {
		errs = append(errs, &node.NodeError{Node: n, Err: fmt.Errorf(format, args...)})
	}
	var minOff, maxOff time.Duration
	var minN, maxN string
	first := true
	for _, n := range inv.Nodes {
		f := facts[n.Name]
		if f == nil || n.Role == inventory.RoleLoadBalancer {
			continue
		}
		if first || f.ClockOffset < minOff {
			minOff, minN = f.ClockOffset, n.Name
		}
		if first || f.ClockOffset > maxOff {
			maxOff, maxN = f.ClockOffset, n.Name
		}
		first = false
	}
	if maxOff-minOff >= 30*time.Second {
		fail(maxN, "clock is %s ahead of %s's (kubeadm needs < 30s of skew: run NTP)", (maxOff - minOff).Round(time.Second), minN)
	}
	for _, n := range todo {
		f := facts[n.Name]
		if f == nil || n.Role == inventory.RoleLoadBalancer {
			continue
		}
		want := inv.KubernetesVersion
		for _, v := range []struct{ what, got string }{{"kubeadm", f.KubeadmVersion}, {"kubelet", f.KubeletVersion}} {
			switch {
			case v.got == "":
				fail(n.Name, "%s is not installed (run `kbootstrap playbook run prepare-node`)", v.what)
			case !sameVersion(v.got, want):
				fail(n.Name, "%s is %s, the inventory's kubernetesVersion is %s", v.what, v.got, want)
			}
		}
		if !f.RuntimeUp {
			fail(n.Name, "containerd is not running (no /run/containerd/containerd.sock)")
		}
		ports := []int{10250}
		if n.Role == inventory.RoleControlPlane {
			ports = append(ports, 6443, 2379, 2380)
		}
		for _, p := range ports {
			if slices.Contains(f.ListeningPorts, p) {
				fail(n.Name, "port %d is in use (a kubelet or control plane from an earlier attempt? `kbootstrap reset --host %s`)", p, n.Name)
			}
		}
		if f.Joined && !f.InCluster {
			fail(n.Name, "has /etc/kubernetes/kubelet.conf but is no Node of this cluster (joined elsewhere, or a failed join): `kbootstrap reset --host %s`", n.Name)
		}
	}
	return errs
}
