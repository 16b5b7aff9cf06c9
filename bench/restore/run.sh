#!/usr/bin/env bash
# Restore benchmark (issue 14, item 7): `kbootstrap restore` of 3 control
# planes behind lb1 from a bundle, with the database init left (small) and
# with ~1 GiB of ConfigMaps (KBOOTSTRAP_BENCH_MIB, default 1024), against
# the time etcdutl's own `snapshot restore` of the same snapshot takes for
# one member on this machine (the lab's nodes share its CPU and disk), in
# the same invocation; prints both and their ratio.
#
#   bench/restore/run.sh                      # 1024 MiB
#   KBOOTSTRAP_BENCH_MIB=256 bench/restore/run.sh
#
# Needs root and the upstream binaries (make lab-artifacts). The report is
# also written to .lab/bench-restore.out.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
mkdir -p "$REPO/.lab"
cd "$REPO/test"
KBOOTSTRAP_BENCH=1 KBOOTSTRAP_BENCH_OUT="$REPO/.lab/bench-restore.out" \
	go test ./e2e -count=1 -timeout 60m -run '^TestRestoreBench$' -v "$@"
echo
cat "$REPO/.lab/bench-restore.out"
