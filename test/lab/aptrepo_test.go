package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAptRepo builds the lab's repository of two minors from stand-in
// binaries and reads it with apt itself (an apt configuration of its own,
// the repository's key as signed-by): the signature holds, every version
// is listed, a package downloads and carries its binary and units.
func TestAptRepo(t *testing.T) {
	for _, tool := range []string{"gpg", "dpkg-deb", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (the lab's apt repository needs it)", tool)
		}
	}
	t.Setenv("KBOOTSTRAP_LAB_CACHE", t.TempDir())
	tmp := t.TempDir()
	var pkgs []AptPackages
	for _, v := range []string{"v1.33.13", "v1.34.3", "v1.34.4"} {
		bin := filepath.Join(tmp, v)
		os.MkdirAll(bin, 0o755)
		for _, b := range []string{"kubeadm", "kubelet", "kubectl"} {
			if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\necho "+b+" "+v+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		pkgs = append(pkgs, AptPackages{Version: v, Revision: "1.1", Bin: bin})
	}
	root := filepath.Join(tmp, "repo")
	ctx := context.Background()
	if err := AptRepo(ctx, root, pkgs...); err != nil {
		t.Fatal(err)
	}
	// Again: cached, and the same.
	if err := AptRepo(ctx, root, pkgs...); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, AptBase, "v1.34", "deb")
	key := filepath.Join(tmp, "key.asc")
	b, err := os.ReadFile(filepath.Join(dir, "Release.key"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(key, b, 0o644)
	a := filepath.Join(tmp, "apt")
	for _, d := range []string{"lists/partial", "cache/archives/partial", "parts.d"} {
		os.MkdirAll(filepath.Join(a, d), 0o755)
	}
	os.WriteFile(filepath.Join(a, "sources.list"), []byte("deb [signed-by="+key+"] file://"+dir+"/ /\n"), 0o644)
	apt := func(tool string, args ...string) string {
		t.Helper()
		cmd := exec.Command(tool, append([]string{"-q", "-o", "Dir::Etc::SourceList=" + a + "/sources.list", "-o", "Dir::Etc::SourceParts=" + a + "/parts.d",
			"-o", "Dir::State::Lists=" + a + "/lists", "-o", "Dir::Cache=" + a + "/cache", "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1"}, args...)...)
		cmd.Dir = tmp
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
		}
		return string(out)
	}
	if out := apt("apt-get", "update"); strings.Contains(out, "W:") || strings.Contains(out, "E:") {
		t.Fatalf("apt-get update warns:\n%s", out)
	}
	if out := apt("apt-cache", "madison", "kubelet"); !strings.Contains(out, "1.34.4-1.1") || !strings.Contains(out, "1.34.3-1.1") || strings.Contains(out, "1.33") {
		t.Errorf("apt-cache madison kubelet of v1.34:\n%s", out)
	}
	apt("apt-get", "download", "kubelet=1.34.4-1.1")
	out, err := exec.Command("dpkg-deb", "-c", filepath.Join(tmp, "kubelet_1.34.4-1.1_amd64.deb")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "./usr/bin/kubelet") || !strings.Contains(string(out), "./usr/lib/systemd/system/kubelet.service") {
		t.Errorf("the kubelet package holds:\n%s%v", out, err)
	}
	out, _ = exec.Command("dpkg-deb", "-f", filepath.Join(tmp, "kubelet_1.34.4-1.1_amd64.deb"), "Depends").CombinedOutput()
	if !strings.Contains(string(out), "conntrack") {
		t.Errorf("the kubelet package depends on %s", out)
	}
}
