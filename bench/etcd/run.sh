#!/usr/bin/env bash
# Snapshot benchmark of `kbootstrap etcd snapshot save` (issue 4, item 7).
#
# Brings up (or reuses) the etcd lab of test/e2e (three lab nodes running a
# kubeadm-configured 3-member etcd and kube-apiserver), loads ~1 GiB into etcd,
# then alternates three times:
#   - `etcdctl snapshot save` run on the node itself (local TLS to 127.0.0.1:2379),
#   - `kbootstrap etcd snapshot save` on this machine, through the SSH tunnel,
# and prints both throughputs (whole commands, median), their ratio and
# kbootstrap's peak RSS (getrusage of the child). Fails when the ratio is
# under 0.8 or the RSS reaches 64 MiB.
#
#   bench/etcd/run.sh                 # 1024 MiB
#   KBOOTSTRAP_BENCH_MIB=256 bench/etcd/run.sh
#
# Needs root and the upstream binaries (make lab-artifacts). The report is also
# written to bench/etcd/last-run.txt.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO/test"
KBOOTSTRAP_BENCH=1 KBOOTSTRAP_BENCH_OUT="$HERE/last-run.txt" \
	go test ./e2e -count=1 -timeout 60m -run '^TestEtcdSnapshotBench$' -v "$@"
echo
cat "$HERE/last-run.txt"
