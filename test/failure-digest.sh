#!/usr/bin/env bash
# failure-digest.sh LOG: after a failed `go test` run, the messages of the
# failed tests, apart from the output of the commands they ran, so that the
# end of a long CI log says why (CI may show only its head and tail).
set -euo pipefail
log=${1:?usage: failure-digest.sh LOG}
echo "=== failure digest ($log)"
awk '
	/^--- FAIL: / { print; next }
	# A test log entry: 4 spaces, file_test.go:N: message.
	/^    [A-Za-z0-9_]+_test\.go:[0-9]+: / {
		keep = ($0 !~ / → exit -?[0-9]+ in / && $0 !~ /: timing: /)
		more = 6
		if (keep) print
		next
	}
	# Its continuation lines (8 spaces): a few, for a kept message.
	/^        / { if (keep && more-- > 0) print; next }
	{ keep = 0 }
' "$log"
