package lab

import (
	"reflect"
	"strings"
	"testing"
)

func TestRootfsVariantNames(t *testing.T) {
	min, k8s := RootfsName(), KubernetesRootfsName()
	if strings.Contains(min, "k8s") || !strings.HasPrefix(min, "rootfs-bookworm-") {
		t.Errorf("minimal rootfs name %q", min)
	}
	if !strings.HasPrefix(k8s, "rootfs-bookworm-k8s-") || k8s == min {
		t.Errorf("Kubernetes rootfs name %q (minimal %q)", k8s, min)
	}
	for _, p := range []string{"systemd", "containerd", "runc", "containernetworking-plugins", "iptables", "conntrack",
		"socat", "ethtool", "ebtables", "kmod", "haproxy", "dnsutils", "openssh-server", "sudo"} {
		found := false
		for _, q := range kubernetesRootfs.packages {
			found = found || q == p
		}
		if !found {
			t.Errorf("the Kubernetes rootfs lacks %s", p)
		}
	}
	if variantFor(false).name() != min || variantFor(true).name() != k8s {
		t.Error("variantFor picks the wrong rootfs")
	}
}

func TestExecArgs(t *testing.T) {
	plain := execArgs(42, nil, []string{"hostname"})
	if plain[0] != "nsenter" || plain[len(plain)-1] != "hostname" || !strings.Contains(strings.Join(plain, " "), "-t 42") {
		t.Errorf("tini node: %q", plain)
	}
	k := execArgs(42, []string{"/sys/fs/cgroup/cpu/kblab-x-n1", "/sys/fs/cgroup/memory/kblab-x-n1"}, []string{"hostname"})
	want := []string{"/usr/bin/env", "LAB_JOIN_CGROUPS=/sys/fs/cgroup/cpu/kblab-x-n1 /sys/fs/cgroup/memory/kblab-x-n1",
		"/bin/sh", "-c", cgroupJoinScript, "lab-exec"}
	if !reflect.DeepEqual(k[:len(want)], want) || !reflect.DeepEqual(k[len(want):], plain) {
		t.Errorf("Kubernetes node: %q", k)
	}
}

func TestSortedOpts(t *testing.T) {
	for in, want := range map[string]string{"": "", "cpu": "cpu", "cpuacct,cpu": "cpu,cpuacct", "name=systemd": "name=systemd"} {
		if got := sortedOpts(in); got != want {
			t.Errorf("sortedOpts(%q) = %q, want %q", in, got, want)
		}
	}
}
