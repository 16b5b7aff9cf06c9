package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// upgradeJSON is the part of `upgrade -o json` the benchmark reads.
type upgradeJSON struct {
	Seconds float64 `json:"seconds"`
	Nodes   []struct {
		Node           string  `json:"node"`
		Action         string  `json:"action"`
		KubeadmSeconds float64 `json:"kubeadmSeconds"`
		Seconds        float64 `json:"seconds"`
		Steps          []struct {
			Name    string  `json:"name"`
			Seconds float64 `json:"seconds"`
		} `json:"steps"`
	} `json:"nodes"`
}

// TestUpgradeBench (bench/upgrade/run.sh): one `kbootstrap upgrade` of 3
// control planes and 2 workers behind lb1 from the previous minor, its wall
// time against the time spent inside kubeadm upgrade apply|node and the
// kubelet restarts, and the required waits (drains, Nodes Ready), from its
// own JSON report; the time per node.
func TestUpgradeBench(t *testing.T) {
	if os.Getenv("KBOOTSTRAP_BENCH") == "" {
		t.Skip("benchmark: set KBOOTSTRAP_BENCH=1 or run bench/upgrade/run.sh")
	}
	prevBin, prevImages, prev := upgradeArtifacts(t)
	uc := upgradeCluster(t, prevBin, prevImages, prev)
	bin := artifactsBin()
	images := filepath.Join(filepath.Dir(bin), "images")
	// KBOOTSTRAP_BENCH_SOURCE=packages: from the lab's apt repository (the
	// nodes were installed from it) instead of --binaries.
	source := []string{"--binaries", bin}
	if os.Getenv("KBOOTSTRAP_BENCH_SOURCE") == "packages" {
		source = nil
	}
	start := time.Now()
	r := kbRun(t, nil, append([]string{"-i", uc.inv, "-o", "json", "upgrade", "--images", images, "--yes", "--work-dir", filepath.Join(uc.dir, "work")}, source...)...)
	wall := time.Since(start).Seconds()
	if r.code != 0 {
		t.Fatalf("upgrade: exit %d", r.code)
	}
	var res upgradeJSON
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("upgrade -o json: %v\n%s", err, r.stdout)
	}
	var kubeadm, kubelet, waits float64
	var b strings.Builder
	from := "--binaries"
	if source == nil {
		from = "packages of the lab's apt repository"
	}
	fmt.Fprintf(&b, "upgrade %s -> v1.34.4 of 3 control planes + 2 workers behind lb1 (lab), from %s\n", prev, from)
	for _, n := range res.Nodes {
		kubeadm += n.KubeadmSeconds
		var steps []string
		for _, s := range n.Steps {
			steps = append(steps, fmt.Sprintf("%s %.1fs", s.Name, s.Seconds))
			switch s.Name {
			case "kubelet":
				kubelet += s.Seconds
			case "drain", "ready":
				waits += s.Seconds
			}
		}
		fmt.Fprintf(&b, "  %-8s %-6s %6.1fs (kubeadm %.1fs; %s)\n", n.Node, n.Action, n.Seconds, n.KubeadmSeconds, strings.Join(steps, ", "))
	}
	inside := kubeadm + kubelet
	fmt.Fprintf(&b, "wall (process) %.1fs, the run's own %.1fs\n", wall, res.Seconds)
	fmt.Fprintf(&b, "inside kubeadm %.1fs + kubelet restarts %.1fs = %.1fs; required waits (drains, Nodes Ready) %.1fs\n", kubeadm, kubelet, inside, waits)
	fmt.Fprintf(&b, "ratio wall / (kubeadm + kubelet) = %.2f; overhead beyond kubeadm, kubelet and the waits = %.1fs (%.1f%% of the wall time)\n",
		wall/inside, wall-inside-waits, 100*(wall-inside-waits)/wall)
	t.Log("\n" + b.String())
	if out := os.Getenv("KBOOTSTRAP_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
