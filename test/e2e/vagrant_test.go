package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVagrantfileValidates runs `vagrant validate` on the repository's
// Vagrantfile for several topologies, and feeds the machine list it writes
// to `kbootstrap inventory from-vagrant`.
func TestVagrantfileValidates(t *testing.T) {
	if _, err := exec.LookPath("vagrant"); err != nil {
		t.Skip("vagrant is not installed (apt-get install vagrant; .ci/run does)")
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "Vagrantfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, topo := range []struct {
		name                      string
		cps, workers, lbs         string
		wantMachines, wantRoleCPs int
	}{
		{"minimal", "1", "1", "", 2, 1},
		{"ha", "3", "2", "1", 6, 3},
	} {
		t.Run(topo.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "Vagrantfile", string(src), 0o644)
			cmd := exec.Command("vagrant", "validate")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "KB_CONTROL_PLANES="+topo.cps, "KB_WORKERS="+topo.workers, "VAGRANT_CHECKPOINT_DISABLE=1")
			if topo.lbs != "" {
				cmd.Env = append(cmd.Env, "KB_LOADBALANCERS="+topo.lbs)
			}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Vagrantfile validated successfully") {
				t.Fatalf("vagrant validate: %v\n%s", err, out)
			}
			machines := filepath.Join(dir, ".vagrant", "kbootstrap-machines.json")
			data, err := os.ReadFile(machines)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(string(data), `"name"`); got != topo.wantMachines {
				t.Errorf("%d machines, want %d:\n%s", got, topo.wantMachines, data)
			}
			if got := strings.Count(string(data), `"control-plane"`); got != topo.wantRoleCPs {
				t.Errorf("%d control planes, want %d", got, topo.wantRoleCPs)
			}
		})
	}
}

// TestInventoryFromVagrant builds inventories from saved ssh-config outputs
// of both providers with the binary, and loads them back.
func TestInventoryFromVagrant(t *testing.T) {
	testdata := filepath.Join(repoRoot, "inventory", "testdata")
	for _, provider := range []string{"virtualbox", "libvirt"} {
		t.Run(provider, func(t *testing.T) {
			args := []string{"-i", "/nonexistent", "inventory", "from-vagrant", "--ssh-config", filepath.Join(testdata, "vagrant-"+provider+".ssh-config")}
			if provider == "virtualbox" {
				args = append(args, "--machines", filepath.Join(testdata, "vagrant-machines.json"))
			}
			stdout, _, code := kb(t, args...)
			if code != 0 {
				t.Fatalf("exit %d", code)
			}
			golden, _ := os.ReadFile(filepath.Join(testdata, "vagrant-"+provider+".golden.yaml"))
			if stdout != string(golden) {
				t.Errorf("from-vagrant output differs from the golden file:\n%s", stdout)
			}
			inv := writeFile(t, t.TempDir(), "kbootstrap.yaml", stdout, 0o644)
			// The generated inventory is accepted by every command's loader.
			_, stderr, code := kb(t, "-i", inv, "--host", "nope", "exec", "--", "true")
			if code != 2 || !strings.Contains(stderr, `--host "nope": no such node`) {
				t.Errorf("generated inventory did not load: exit %d %s", code, stderr)
			}
		})
	}
}
