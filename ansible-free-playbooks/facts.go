package playbooks

import (
	"context"
	"strconv"
	"strings"

	"github.com/kbootstrap/kbootstrap/node"
)

// factsScript prints key=value lines; it needs nothing but a POSIX shell and
// coreutils, and tolerates every missing tool.
const factsScript = `[ -r /etc/os-release ] && . /etc/os-release
echo "os=${ID:-}"
echo "os_version=${VERSION_ID:-}"
echo "os_codename=${VERSION_CODENAME:-}"
echo "os_pretty=${PRETTY_NAME:-}"
echo "arch=$(uname -m)"
echo "kernel=$(uname -r)"
echo "hostname=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
if command -v ip >/dev/null 2>&1; then
  echo "addresses=$(ip -o addr show scope global 2>/dev/null | awk '{split($4, a, "/"); printf "%s ", a[1]}')"
else
  echo "addresses=$(hostname -I 2>/dev/null)"
fi
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
awk '/^MemTotal:/ {print "memory_mb=" int($2/1024)} /^SwapTotal:/ {print "swap_mb=" int($2/1024)}' /proc/meminfo
echo "swap_devices=$(tail -n +2 /proc/swaps 2>/dev/null | wc -l)"
if [ -d /run/systemd/system ]; then echo init=systemd; else echo "init=$(cat /proc/1/comm 2>/dev/null)"; fi
if [ -S /run/containerd/containerd.sock ] || command -v containerd >/dev/null 2>&1; then
  echo container_runtime=containerd
  echo "container_runtime_version=$(containerd --version 2>/dev/null | awk '{print $3}')"
elif [ -S /var/run/crio/crio.sock ] || command -v crio >/dev/null 2>&1; then
  echo container_runtime=cri-o
  echo "container_runtime_version=$(crio --version 2>/dev/null | awk '/^Version/ {print $2}')"
elif command -v docker >/dev/null 2>&1; then
  echo container_runtime=docker
  echo "container_runtime_version=$(docker --version 2>/dev/null | awk '{print $3}' | tr -d ,)"
else
  echo container_runtime=
fi
echo "kubeadm_version=$(kubeadm version -o short 2>/dev/null)"
echo "kubelet_version=$(kubelet --version 2>/dev/null | awk '{print $2}')"
echo "kubectl_version=$(kubectl version --client 2>/dev/null | awk '/Client Version/ {print $3}')"
echo "user=$(id -un)"
# What containerd should be told: the systemd cgroup driver where systemd runs
# the machine (not inside a container, where cgroupfs is what works), and
# restrict_oom_score_adj where the bounding set lacks CAP_SYS_RESOURCE (bit 24:
# runc then fails with "can't get final child's PID from pipe").
if [ -d /run/systemd/system ] && ! systemd-detect-virt -q -c 2>/dev/null; then echo cgroup_driver=systemd; else echo cgroup_driver=cgroupfs; fi
capbnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status 2>/dev/null)
low=${capbnd#????????}
if [ -n "$low" ] && [ $(( (0x$low >> 24) & 1 )) = 0 ]; then echo restrict_oom_score_adj=true; else echo restrict_oom_score_adj=false; fi
`

// gatherFacts runs factsScript once and types its output. Facts:
//
//	os, os_version, os_codename, os_pretty   from /etc/os-release (os: debian, ubuntu, ...)
//	arch (uname -m), goarch (amd64, arm64, ...), kernel, hostname, user
//	addresses     global addresses ([]string)
//	cpus, memory_mb, swap_mb (int), swap_on (bool: a swap device is active)
//	init          systemd, or the command of PID 1
//	container_runtime, container_runtime_version   containerd, cri-o, docker or ""
//	kubeadm_version, kubelet_version, kubectl_version   "" when not installed
//	cgroup_driver  systemd (systemd runs the machine, not in a container) or cgroupfs
//	restrict_oom_score_adj  "true" when the bounding set lacks CAP_SYS_RESOURCE, else "false"
func gatherFacts(ctx context.Context, n node.Node) (map[string]any, error) {
	res, err := n.Run(ctx, factsScript)
	if err != nil {
		return nil, scriptError(res, err)
	}
	return parseFacts(string(res.Stdout)), nil
}

func parseFacts(out string) map[string]any {
	f := map[string]any{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "cpus", "memory_mb", "swap_mb", "swap_devices":
			i, _ := strconv.Atoi(v)
			f[k] = i
		case "addresses":
			f[k] = strings.Fields(v)
		default:
			f[k] = v
		}
	}
	for _, k := range []string{"cpus", "memory_mb", "swap_mb", "swap_devices"} {
		if _, ok := f[k]; !ok {
			f[k] = 0
		}
	}
	if _, ok := f["addresses"]; !ok {
		f["addresses"] = []string{}
	}
	f["swap_on"] = f["swap_devices"].(int) > 0
	delete(f, "swap_devices")
	arch, _ := f["arch"].(string)
	f["goarch"] = map[string]string{"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}[arch]
	return f
}
