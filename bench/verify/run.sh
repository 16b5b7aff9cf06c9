#!/usr/bin/env bash
# Benchmark: `kbootstrap verify` on the 3+2 lab (3 control planes, 2 workers,
# lb1), against the floor kubectl sets in the same invocation: the same
# workload (agnhost on every node, the four policy pods, the four Services)
# applied by kubectl, waited for until every pod runs (`kubectl wait`), and
# its namespace deleted and waited for (`kubectl delete namespace --wait`):
# what any tool pays to run pods and clean up, with no check at all. Prints,
# per round, verify's wall time, the floor, their ratio and what each group
# of checks cost (verify's own "groupSeconds"). Target: verify under 30 s.
#
# Usage: bench/verify/run.sh [ROUNDS]   (root; brings up and removes lab
#                                        "bvfy"; needs make lab-artifacts)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
DIR=$PWD/.lab/bench-verify
OUT=$PWD/.lab/bench-verify.out # kept after the lab is removed
ID=bvfy
ART=$PWD/.lab/artifacts
[ -x "$ART/bin/kubeadm" ] || { echo "no $ART/bin/kubeadm: run make lab-artifacts" >&2; exit 2; }
[ -f "$ART/images/registry.k8s.io_e2e-test-images_agnhost_2.56.tar" ] || { echo "no agnhost image in $ART/images: run make lab-artifacts" >&2; exit 2; }

go build -o bin/kbootstrap ./cmd/kbootstrap
(cd test && go build -o ../bin/lab ./lab/cmd/lab)
trap 'bin/lab down --dir "$DIR" --id $ID >/dev/null 2>&1 || true' EXIT
INV=$DIR/kbootstrap.yaml
KC=$OUT/bench.kubeconfig
mkdir -p "$OUT"
lab() { bin/lab exec --dir "$DIR" --id $ID "$@"; }
kubectl() { "$ART/bin/kubectl" --kubeconfig "$KC" "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

echo "forming the 3+2 cluster (lab $ID) ..."
bin/lab down --dir "$DIR" --id $ID >/dev/null 2>&1 || true
bin/lab up --dir "$DIR" --id $ID --kubernetes --cp 3 --workers 2 --lb 1 \
  --subnet 10.102.0.0/24 --subnet2 10.103.0.0/24 --artifacts "$ART/bin" >/dev/null
for n in $(awk '/name:/ && !/^name/ {print $3}' "$INV"); do
  for _ in $(seq 90); do
    s=$(lab "$n" -- systemctl is-system-running 2>/dev/null || true)
    [ "$s" = running ] && break
    sleep 1
  done
done
bin/kbootstrap -i "$INV" playbook run prepare-node --binaries "$ART/bin" --images "$ART/images" >/dev/null
bin/kbootstrap -i "$INV" init --skip-phases verify --kubeconfig-out "$KC" >"$OUT/init.out"
NODES=$(kubectl get nodes -o jsonpath='{.items[*].metadata.name}')

# The floor's manifest: verify's workload, without its checks.
floor_manifest() {
  local ns=$1 i=0 n
  printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$ns"
  pod() {
    printf -- '---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s, labels: {role: server}}\nspec:\n  nodeName: %s\n  terminationGracePeriodSeconds: 1\n  tolerations: [{operator: Exists}]\n  containers:\n  - {name: agnhost, image: registry.k8s.io/e2e-test-images/agnhost:2.56, args: [netexec, --http-port=8080, --udp-port=-1], ports: [{name: http, containerPort: 8080}]}\n' "$1" "$ns" "$2"
  }
  for n in $NODES; do pod "srv-$i" "$n"; i=$((i + 1)); done
  set -- $NODES
  pod np-target "$1"; pod np-allowed "${2:-$1}"; pod np-denied "${3:-$1}"; pod np-egress "${4:-$1}"
  for s in kbv kbv-headless kbv-nodeport; do
    printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec: {selector: {role: server}, ports: [{port: 80, targetPort: http}]%s}\n' \
      "$s" "$ns" "$(case $s in kbv-headless) echo ', clusterIP: None' ;; kbv-nodeport) echo ', type: NodePort' ;; esac)"
  done
  printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: kbv-external, namespace: %s}\nspec: {type: ExternalName, externalName: kbv.%s.svc.cluster.local}\n' "$ns" "$ns"
}

printf '\n%-6s %10s %10s %7s  %s\n' round verify floor ratio "verify per group (s)"
for r in $(seq "$ROUNDS"); do
  ns=bench-floor-$r
  t0=$(now)
  floor_manifest "$ns" | kubectl apply -f - >/dev/null
  kubectl -n "$ns" wait --for=condition=Ready pod --all --timeout=3m >/dev/null
  kubectl delete namespace "$ns" --wait=true >/dev/null
  floor=$(secs "$t0" "$(now)")

  t0=$(now)
  rc=0
  bin/kbootstrap -i "$INV" -o json verify >"$OUT/verify-$r.json" 2>"$OUT/verify-$r.err" || rc=$?
  wall=$(secs "$t0" "$(now)")
  groups=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join("%s=%.1f" % kv for kv in d["groupSeconds"].items()))' "$OUT/verify-$r.json")
  fails=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(",".join(sorted({f["check"] for f in d["findings"] if f["severity"] == "fail"})) or "none")' "$OUT/verify-$r.json")
  printf '%-6s %9ss %9ss %6.2fx  %s (exit %d; failed: %s)\n' "$r" "$wall" "$floor" "$(awk -v a="$wall" -v b="$floor" 'BEGIN { print a / b }')" "$groups" "$rc" "$fails"
done
echo "outputs in $OUT"
