#!/usr/bin/env bash
# Benchmark: `kbootstrap certs renew` of 3 control planes behind the
# loadbalancer playbook's haproxy, per control plane, against the floor the
# kubelet and the components set, in the same invocation: each control
# plane's four static pods restarted by hand (the container stopped, then a
# new one and its health endpoint answering, one after the other), with
# nothing around it (no lock, backup, kubeadm, drain, audit or TLS
# verification). Each is measured on a freshly formed cluster of its own
# (the same lab, brought up twice): the kubelet doubles a container's
# restart back-off (10 s, 20 s, 40 s...) for restarts less than 10 minutes
# apart, so a renewal right after the floor's restarts (or the reverse)
# would measure the back-off. A strict client polls the API through the load
# balancer throughout (curl: a new connection per request, 2 s, no retry,
# every 0.5 s) and its failures are counted (target: 0). Target: a renewal
# under 60 s per control plane.
#
# Usage: bench/renew/run.sh     (root; brings up and removes lab "brnw";
#                                needs make lab-artifacts)
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=$PWD/.lab/bench-renew
OUT=$PWD/.lab/bench-renew.out   # kept after the lab is removed
ID=brnw
ART=$PWD/.lab/artifacts
[ -x "$ART/bin/kubeadm" ] || { echo "no $ART/bin/kubeadm: run make lab-artifacts" >&2; exit 2; }

go build -o bin/kbootstrap ./cmd/kbootstrap
(cd test && go build -o ../bin/lab ./lab/cmd/lab)
trap 'kill $POLL 2>/dev/null || true; bin/lab down --dir "$DIR" --id $ID >/dev/null 2>&1 || true' EXIT
POLL=
INV=$DIR/kbootstrap.yaml
lab() { bin/lab exec --dir "$DIR" --id $ID "$@"; }
# cluster forms a fresh 3-control-plane cluster behind lb1 in the lab.
cluster() {
  bin/lab down --dir "$DIR" --id $ID >/dev/null 2>&1 || true
  bin/lab up --dir "$DIR" --id $ID --kubernetes --cp 3 --workers 0 --lb 1 \
    --subnet 10.100.0.0/24 --subnet2 10.101.0.0/24 --artifacts "$ART/bin" >/dev/null
  for n in $(awk '/name:/ && !/^name/ {print $3}' "$INV"); do
    for i in $(seq 90); do
      s=$(lab "$n" -- systemctl is-system-running 2>/dev/null || true)
      [ "$s" = running ] && break; sleep 1
    done
  done
  bin/kbootstrap -i "$INV" playbook run prepare-node --binaries "$ART/bin" --images "$ART/images" >/dev/null
  bin/kbootstrap -i "$INV" init --kubeconfig-out "$OUT/bench.kubeconfig" >"$OUT/init.out"
}
mkdir -p "$OUT"

now() { date +%s.%N; }
# The floor: each component of a control plane stopped (SIGTERM, SIGKILL
# after the same grace as kbootstrap's) and back healthy, in kbootstrap's
# order, timed on the node.
floor() {
  lab "$1" -- bash -c '
running() { # the running container of component $1 (ctr: the lab has no crictl)
  tasks=$(ctr -n k8s.io tasks ls)
  for id in $(ctr -n k8s.io containers ls -q "labels.\"io.kubernetes.container.name\"==$1"); do
    printf "%s\n" "$tasks" | awk -v id="$id" "\$1 == id && \$3 == \"RUNNING\" { print id }"
  done; }
health() { case $1 in
  kube-apiserver) curl -skf --max-time 2 https://127.0.0.1:6443/readyz ;;
  etcd) curl -sf --max-time 2 http://127.0.0.1:2381/health | grep -q "\"health\":\"true\"" ;;
  kube-controller-manager) curl -skf --max-time 2 https://127.0.0.1:10257/healthz ;;
  kube-scheduler) curl -skf --max-time 2 https://127.0.0.1:10259/healthz ;;
esac >/dev/null; }
t0=$(date +%s.%N)
for c in kube-controller-manager kube-scheduler etcd kube-apiserver; do
  old=$(running $c)
  grace=5; [ $c = etcd ] && grace=15   # as kbootstrap stops them
  ctr -n k8s.io tasks kill $old
  end=$(( $(date +%s) + grace ))
  while [ -n "$(running $c)" ] && [ "$(running $c)" = "$old" ] && [ "$(date +%s)" -lt $end ]; do sleep 0.2; done
  [ "$(running $c)" = "$old" ] && ctr -n k8s.io tasks kill -s SIGKILL $old
  until id=$(running $c) && [ -n "$id" ] && [ "$id" != "$old" ]; do sleep 0.2; done
  until health $c; do sleep 0.2; done
done
awk -v a="$t0" -v b="$(date +%s.%N)" "BEGIN { print b - a }"'
}

cluster
declare -A FLOOR
for cp in cp1 cp2 cp3; do FLOOR[$cp]=$(floor $cp); done
cluster
LB=$(awk '/name: lb1/ {f=1} f && /address:/ {print $2; exit}' "$INV")
# The strict client, through the load balancer.
: >"$OUT/client.log"
( while :; do
    s=$(date +%T.%N | cut -c1-12)
    if out=$(curl -sk --max-time 2 -o /dev/null -w '%{http_code}' "https://$LB:6443/livez" 2>&1) && [ "$out" = 200 ]; then
      echo "ok $s" >>"$OUT/client.log"
    else
      echo "FAIL $s $out" >>"$OUT/client.log"
    fi
    sleep 0.5
  done ) &
POLL=$!
t0=$(now)
bin/kbootstrap -i "$INV" certs renew --if-expiring-within 400d --kubeconfig-out "$OUT/bench.kubeconfig" >"$OUT/renew.out" 2>&1
t1=$(now)
sleep 2
kill $POLL; POLL=

secs() { python3 -c "
import re,sys
t=0
for v,u in re.findall(r'([0-9.]+)(h|ms|m|s)', sys.argv[1]): t+=float(v)*{'h':3600,'m':60,'s':1,'ms':0.001}[u]
print(t)" "$1"; }
grep -E '^(✓|✗)' "$OUT/renew.out" | grep -E 'draining|restarting|healthy|undraining'
echo
printf '%-4s %22s %30s %7s\n' node 'kbootstrap renewal' 'floor: 4 pods restarted, healthy' ratio
for cp in cp1 cp2 cp3; do
  # A control plane's renewal: the sum of its steps (they run one after the other).
  r=0
  while read -r d; do r=$(echo "$r + $(secs "$d")" | bc -l); done < <(grep -E "^✓ $cp: " "$OUT/renew.out" | sed -E 's/.*\(([^)]*)\)$/\1/')
  printf '%-4s %21.1fs %29.1fs %6.2fx\n' $cp "$r" "${FLOOR[$cp]}" "$(echo "$r / ${FLOOR[$cp]}" | bc -l)"
done
printf 'whole run (audit, 3 control planes, kubeconfig): %.1fs\n' "$(echo "$t1 - $t0" | bc -l)"
ok=$(grep -c '^ok' "$OUT/client.log" || true); fail=$(grep -c '^FAIL' "$OUT/client.log" || true)
printf 'strict client through lb1 (new connection, 2 s, no retry, every 0.5 s): %d requests, %d failed (target: 0)\n' $((ok + fail)) "$fail"
grep '^FAIL' "$OUT/client.log" || true
