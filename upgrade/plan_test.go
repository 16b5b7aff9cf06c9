package upgrade

import (
	"bytes"
	"testing"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/kbootstrap/kbootstrap/internal/golden"
	"github.com/kbootstrap/kbootstrap/inventory"
)

// TestPlan: the plan of a dry run, node by node (golden file; go test -update
// rewrites it): the first control plane applies, the others run upgrade
// node, workers in batches of MaxUnavailable, an upgraded node said so.
func TestPlan(t *testing.T) {
	for _, c := range []struct{ golden, binaries string }{
		{"plan.golden", "bin/"},
		{"plan-packages.golden", ""},
	} {
		t.Run(c.golden, func(t *testing.T) { testPlan(t, c.golden, c.binaries) })
	}
}

// testPlan: with binaries "", the nodes' packages come from their
// repositories (cp1's on another base).
func testPlan(t *testing.T, goldenFile, binaries string) {
	v := version.MustParseSemantic
	mk := func(name string, role inventory.Role, cp, kubelet string) *target {
		tg := &target{in: inventory.Node{Name: name, Role: role}, cp: role == inventory.RoleControlPlane, kubelet: v(kubelet)}
		if cp != "" {
			tg.controlPlane = v(cp)
		}
		tg.res = &NodeResult{Node: name, Role: string(role), Before: kubelet}
		return tg
	}
	r := &run{
		o:  Options{MaxUnavailable: 2, WorkDir: "prod.upgrade", Images: "images/", Binaries: binaries},
		to: v("v1.34.4"),
		targets: []*target{
			mk("cp1", inventory.RoleControlPlane, "v1.33.13", "v1.33.13"),
			mk("cp2", inventory.RoleControlPlane, "v1.34.4", "v1.34.4"),
			mk("cp3", inventory.RoleControlPlane, "v1.33.13", "v1.33.13"),
			mk("w1", inventory.RoleWorker, "", "v1.33.13"),
			mk("w2", inventory.RoleWorker, "", "v1.33.13"),
			mk("w3", inventory.RoleWorker, "", "v1.32.9"),
		},
		clusterVersion: "v1.33.13",
		res:            &Result{To: "v1.34.4"},
	}
	var todo []*target
	for _, tg := range r.targets {
		if !tg.done(r.to) {
			todo = append(todo, tg)
			if binaries == "" {
				tg.pkg = &packages{uri: "https://pkgs.k8s.io/core:/stable:/v1.34/deb/"}
			}
		}
	}
	var out bytes.Buffer
	r.o.Plan = &out
	if binaries == "" {
		todo[0].pkg.uri = "http://mirror.example/k8s/v1.34/deb/"
	}
	r.plan(todo)
	golden.Check(t, goldenFile, out.Bytes())
}
