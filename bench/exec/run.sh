#!/usr/bin/env bash
# Benchmark: kbootstrap exec against parallel-ssh (Debian's pssh) on the same
# lab nodes and known_hosts, in one invocation.
#   1. one command on every node:   kbootstrap exec -- true  vs  parallel-ssh true
#   2. ten commands per node:       kbootstrap's node layer, one connection per
#      node for the sequence        vs  ten parallel-ssh runs
# Usage: bench/exec/run.sh [NODES] [ROUNDS]   (root; brings up and removes lab "bench")
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=${1:-30}
ROUNDS=${2:-3}
DIR=$PWD/.lab/bench-exec
ID=bexec
command -v parallel-ssh >/dev/null || { echo "parallel-ssh missing: apt-get install pssh" >&2; exit 2; }

go build -o bin/kbootstrap ./cmd/kbootstrap
go build -o bin/bench-exec ./bench/exec
(cd test && go build -o ../bin/lab ./lab/cmd/lab)
trap 'bin/lab down --dir "$DIR" --id $ID >/dev/null 2>&1 || true' EXIT
bin/lab up --dir "$DIR" --id $ID --nodes "$NODES" --subnet 10.96.0.0/24 --subnet2 10.97.0.0/24 >/dev/null

INV=$DIR/kbootstrap.yaml
KEY=$DIR/id_ed25519
KH=$DIR/known_hosts
awk '/address:/ && !/internal/ {print $2}' "$INV" > "$DIR/hosts"
SSHOPTS="-i $KEY -o UserKnownHostsFile=$KH -o StrictHostKeyChecking=yes -o BatchMode=yes"
PSSH=(parallel-ssh -h "$DIR/hosts" -l root -p "$NODES" -t 60 -x "$SSHOPTS")

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Warm up both (page cache, sshd's first fork).
"${PSSH[@]}" true >/dev/null
bin/kbootstrap -i "$INV" --concurrency "$NODES" exec -- true >/dev/null

one_kb=(); one_pssh=(); ten_kb=(); ten_pssh=()
for r in $(seq "$ROUNDS"); do
  t0=$(now); bin/kbootstrap -i "$INV" --concurrency "$NODES" exec -- true >/dev/null; t1=$(now)
  one_kb+=("$(elapsed "$t0" "$t1")")
  t0=$(now); "${PSSH[@]}" true >/dev/null; t1=$(now)
  one_pssh+=("$(elapsed "$t0" "$t1")")
  ten_kb+=("$(bin/bench-exec -i "$INV" -n 10 -concurrency "$NODES")")
  t0=$(now); for i in $(seq 10); do "${PSSH[@]}" "echo step $i >/dev/null" >/dev/null; done; t1=$(now)
  ten_pssh+=("$(elapsed "$t0" "$t1")")
done

m1k=$(printf '%s\n' "${one_kb[@]}" | median); m1p=$(printf '%s\n' "${one_pssh[@]}" | median)
m10k=$(printf '%s\n' "${ten_kb[@]}" | median); m10p=$(printf '%s\n' "${ten_pssh[@]}" | median)
printf 'nodes=%d rounds=%d (median seconds)\n' "$NODES" "$ROUNDS"
printf 'exec -- true:        kbootstrap %.3f  parallel-ssh %.3f  ratio kbootstrap/pssh %.2f\n' "$m1k" "$m1p" "$(echo "$m1k / $m1p" | bc -l)"
printf '10 commands per node: kbootstrap %.3f  parallel-ssh x10 %.3f  ratio kbootstrap/pssh %.2f\n' "$m10k" "$m10p" "$(echo "$m10k / $m10p" | bc -l)"
