#!/usr/bin/env bash
# make demo: the main job on the lab, from bare VM-like nodes to a checked HA
# cluster, with the time of each step:
#   lab up (3 control planes, 2 workers, 1 load balancer; systemd + containerd,
#   no Kubernetes) → kbootstrap playbook run prepare-node (air-gapped: binaries
#   and images uploaded) → kbootstrap init (ending with its fast verify) →
#   kbootstrap certs check →
#   kbootstrap etcd members → kubectl get nodes.
# Needs root. The first run builds the upstream binaries (minutes; cached).
# The lab stays up afterwards: `make lab-down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB_DIR=${LAB_DIR:-$PWD/.lab}
ART=$LAB_DIR/artifacts
INV=$LAB_DIR/kbootstrap.yaml
KUBECONFIG_OUT=$LAB_DIR/lab.kubeconfig
start=$(date +%s)
step() {
  local t0 rc=0 title=$1; shift
  t0=$(date +%s.%N)
  echo "━━ $title"
  "$@" || rc=$?
  printf '   (%s: %ss, exit %d)\n' "$title" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" "$rc"
  return "$rc"
}
[ "$(id -u)" = 0 ] || { echo "make demo needs root (network namespaces)" >&2; exit 2; }

step "upstream binaries and images (cached)" make -s lab-artifacts LAB_DIR="$LAB_DIR"
step "build kbootstrap" make -s build
KB=(bin/kbootstrap -i "$INV")
step "lab up: cp1-3, worker1-2, lb1" make -s lab LAB_DIR="$LAB_DIR"
wait_booted() {
  for n in $(bin/lab status --dir "$LAB_DIR" 2>/dev/null | awk 'NR>2 {print $1}'); do
    for _ in $(seq 120); do
      s=$(bin/lab exec --dir "$LAB_DIR" "$n" -- systemctl is-system-running 2>/dev/null || true)
      case $s in running|degraded) break ;; esac
      sleep 0.5
    done
    echo "   $n: systemd ${s:-unknown}"
  done
}
step "nodes booted" wait_booted
# containerd's cgroup driver and restrict_oom_score_adj come from each node's facts (the lab's
# nodes are containers whose bounding set lacks CAP_SYS_RESOURCE).
step "kbootstrap playbook run prepare-node" "${KB[@]}" --accept-new-host-keys playbook run prepare-node \
  --binaries "$ART/bin" --images "$ART/images"
step "kbootstrap init" "${KB[@]}" init --kubeconfig-out "$KUBECONFIG_OUT"
# certs check exits 1 on warnings (super-admin.conf on the first control plane).
step "kbootstrap certs check" "${KB[@]}" certs check || [ $? = 1 ]
step "kbootstrap etcd members" "${KB[@]}" etcd members
step "kubectl get nodes" "$ART/bin/kubectl" --kubeconfig "$KUBECONFIG_OUT" get nodes -o wide
echo "demo done in $(( $(date +%s) - start ))s; kubeconfig: $KUBECONFIG_OUT; remove the lab with: make lab-down"
