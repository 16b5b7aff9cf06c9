#!/usr/bin/env bash
# Upgrade benchmark (issue 15, item 4): one `kbootstrap upgrade` of 3
# control planes and 2 workers behind lb1 from the lab's previous minor to
# its version (air-gapped, or from packages); its wall time against the time spent inside
# kubeadm upgrade apply|node and the kubelet restarts, in the same
# invocation (read from the run's own JSON report), the required waits
# (drains, Nodes Ready) apart, and the time per node.
#
#   bench/upgrade/run.sh                           # air-gapped, --binaries
#   KBOOTSTRAP_BENCH_SOURCE=packages bench/upgrade/run.sh   # from the lab's apt repository
#
# Needs root and the upstream binaries of both minors (make lab-artifacts
# lab-artifacts-previous). The report is also written to .lab/bench-upgrade.out.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
mkdir -p "$REPO/.lab"
cd "$REPO/test"
KBOOTSTRAP_BENCH=1 KBOOTSTRAP_BENCH_OUT="$REPO/.lab/bench-upgrade.out" \
	go test ./e2e -count=1 -timeout 60m -run '^TestUpgradeBench$' -v "$@"
echo
cat "$REPO/.lab/bench-upgrade.out"
