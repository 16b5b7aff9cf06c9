package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kbootstrap/kbootstrap/test/lab"
)

var restoreBenchSpec = labSpec{
	id: "brst", subnet: "10.106.0.0/24", subnet2: "10.107.0.0/24", kubernetes: true, dedicated: true,
	nodes: []lab.NodeSpec{
		{Name: "lb1", Role: "loadbalancer"},
		{Name: "cp1", Role: "control-plane"}, {Name: "cp2", Role: "control-plane"}, {Name: "cp3", Role: "control-plane"},
	},
}

// TestRestoreBench (bench/restore/run.sh): `kbootstrap restore` of 3
// control planes from a bundle, with the database as init left it and with
// ~KBOOTSTRAP_BENCH_MIB MiB of ConfigMaps (default 1024), against the time
// etcdutl's own restore of the same snapshot takes for one member on this
// machine (the lab's nodes share its CPU and disk), in the same invocation.
func TestRestoreBench(t *testing.T) {
	if os.Getenv("KBOOTSTRAP_BENCH") == "" {
		t.Skip("benchmark: set KBOOTSTRAP_BENCH=1 or run bench/restore/run.sh")
	}
	if artifactsBin() == "" {
		t.Skip("the upstream artifacts are missing: make lab-artifacts")
	}
	sizeMiB := 1024
	if v, err := strconv.Atoi(os.Getenv("KBOOTSTRAP_BENCH_MIB")); err == nil && v > 0 {
		sizeMiB = v
	}
	_, inv, _, cs := restoreCluster(t, restoreBenchSpec)
	dir := t.TempDir()
	var report strings.Builder
	fmt.Fprintf(&report, "restore benchmark: 3 control planes behind lb1, load average %s\n", loadAverage())
	for _, round := range []struct {
		name string
		mib  int
	}{{"small", 0}, {"large", sizeMiB}} {
		if round.mib > 0 {
			load := time.Now()
			fillConfigMaps(t, cs, round.mib)
			t.Logf("loaded %d MiB of ConfigMaps in %s", round.mib, time.Since(load).Round(time.Second))
		}
		bundle := filepath.Join(dir, round.name+".bundle")
		r := kbRun(t, nil, "-i", inv, "backup", bundle)
		if r.code != 0 {
			t.Fatalf("backup: exit %d", r.code)
		}
		snap := filepath.Join(dir, round.name+".db")
		if r = kbRun(t, nil, "-i", inv, "--host", "cp1", "etcd", "snapshot", "save", snap); r.code != 0 {
			t.Fatalf("etcd snapshot save: exit %d", r.code)
		}
		fi, err := os.Stat(snap)
		if err != nil {
			t.Fatal(err)
		}
		// The floor: etcdutl restoring that snapshot for one member.
		out := filepath.Join(dir, round.name+".etcd")
		start := time.Now()
		cmd := exec.Command(filepath.Join(artifactsBin(), "etcdutl"), "snapshot", "restore", snap, "--data-dir", out,
			"--name", "cp1", "--initial-cluster", "cp1=https://10.0.0.1:2380", "--initial-advertise-peer-urls", "https://10.0.0.1:2380",
			"--bump-revision", "1000000000", "--mark-compacted")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("etcdutl snapshot restore: %v\n%s", err, b)
		}
		floor := time.Since(start)
		os.RemoveAll(out)
		os.Remove(snap)

		r = kbRun(t, nil, "-i", inv, "restore", bundle, "--yes", "-o", "json")
		if r.code != 0 {
			t.Fatalf("restore: exit %d", r.code)
		}
		var res struct {
			Seconds float64 `json:"seconds"`
			Steps   []struct {
				Name    string  `json:"name"`
				Seconds float64 `json:"seconds"`
			} `json:"steps"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatal(err)
		}
		var steps []string
		for _, s := range res.Steps {
			steps = append(steps, fmt.Sprintf("%s %.1f s", s.Name, s.Seconds))
		}
		fmt.Fprintf(&report, "  %-5s database %6.1f MiB: restore %6.1f s wall (command %.1f s) vs etcdutl snapshot restore of one member %5.1f s (%.1fx)\n        steps: %s\n",
			round.name, float64(fi.Size())/(1<<20), r.took.Seconds(), res.Seconds, floor.Seconds(), r.took.Seconds()/floor.Seconds(), strings.Join(steps, ", "))
		os.Remove(bundle)
	}
	t.Log("\n" + report.String())
	if out := os.Getenv("KBOOTSTRAP_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(report.String()), 0o644)
	}
}

// fillConfigMaps creates ConfigMaps of 900 KiB each (under the 1 MiB limit
// of an object) until mib MiB are stored, 8 at a time.
func fillConfigMaps(t *testing.T, cs kubernetes.Interface, mib int) {
	t.Helper()
	const each = 900 << 10
	n := (mib<<20 + each - 1) / each
	value := strings.Repeat("x", each)
	ctx := context.Background()
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			// Different content per object: etcd stores it as given.
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%05d", i)}, Data: map[string]string{"v": fmt.Sprintf("%08d", i) + value[8:]}}
			_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("ConfigMap %d of %d: %v", i, n, err)
		}
	}
}
