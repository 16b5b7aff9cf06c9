#!/usr/bin/env bash
# test-summary.sh LOG: what a `go test -v` run in LOG came to, for a CI log
# that may be shown only by its head and tail: every test's result and
# time, the packages' results, then, when a test failed, its messages apart
# from the output of the commands it ran (kbRun's "→ exit" entries) and its
# timings.
set -euo pipefail
log=${1:?usage: test-summary.sh LOG}
echo "=== test results ($log)"
grep -E '^ *--- (PASS|FAIL|SKIP): |^(ok|FAIL|panic:)' "$log" || true
grep -q -E '^ *--- FAIL: |^panic:' "$log" || exit 0
echo "=== failure digest"
awk '
	function indent(s) { match(s, /^ */); return RLENGTH }
	/^=== (RUN|CONT|NAME) / { cur = $3; after = 0; keep = 0; next }
	/^=== PAUSE / { next }
	/^ *--- FAIL: / {
		name = $3
		print
		printf "%s", buf[name]
		delete buf[name]
		after = 1; keep = 0
		next
	}
	/^ *--- (PASS|SKIP): / { delete buf[$3]; after = 0; keep = 0; next }
	/^ +[A-Za-z0-9_]+_test\.go:[0-9]+: / {
		keep = ($0 !~ / → exit -?[0-9]+ in / && $0 !~ /: timing: /)
		ind = indent($0); more = 6
		if (keep) emit($0)
		next
	}
	/^ +/ { if (keep && indent($0) > ind && more-- > 0) emit($0); next }
	{ keep = 0 }
	# -v: a message is kept with its test until the test ends; without -v
	# (no === lines) it follows its --- FAIL line and is printed at once.
	function emit(s) { if (cur != "" && !after) buf[cur] = buf[cur] s "\n"; else print s }
' "$log"
