#!/usr/bin/env bash
# bench/playbook/run.sh: the same 10-task playbook on 30 lab nodes, run by
# kbootstrap (kbootstrap.yaml) and by Debian's ansible-playbook (ansible.yaml)
# in one invocation. Each tool runs twice on fresh nodes: a first run (every
# task changes) and a second run (nothing to do). Prints both times and the
# ratios; the lab is torn down at the end.
#
# Needs root (the lab), and installs Debian's ansible when it is missing.
# Environment: BENCH_NODES (30), BENCH_LAB_ID (bpb), BENCH_SUBNET
# (10.85.0.0/24), BENCH_FORKS (= nodes; ansible's forks and kbootstrap's
# --concurrency), BENCH_KEEP_LAB=1 keeps the lab.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
nodes=${BENCH_NODES:-30}
id=${BENCH_LAB_ID:-bpb}
subnet=${BENCH_SUBNET:-10.85.0.0/24}
subnet2=${BENCH_SUBNET2:-10.86.0.0/24}
forks=${BENCH_FORKS:-$nodes}
labdir=$repo/.lab/bench-$id
work=$(mktemp -d /tmp/kbootstrap-bench-playbook.XXXXXX)

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: the lab needs root" >&2
	exit 2
fi
if ! command -v ansible-playbook >/dev/null; then
	echo "== installing Debian's ansible" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ansible >/dev/null
fi

echo "== building kbootstrap and the lab tool" >&2
(cd "$repo" && go build -o "$work/kbootstrap" ./cmd/kbootstrap)
(cd "$repo/test" && go build -o "$work/lab" ./lab/cmd/lab)
lab() { local cmd=$1; shift; "$work/lab" "$cmd" --dir "$labdir" --id "$id" "$@"; }

cleanup() {
	if [ -z "${BENCH_KEEP_LAB:-}" ]; then
		lab down >&2 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "== bringing up $nodes lab nodes" >&2
lab up --nodes "$nodes" --subnet "$subnet" --subnet2 "$subnet2" >&2
inv=$labdir/kbootstrap.yaml

# The Ansible inventory and configuration from the lab's inventory: same
# key, same known_hosts (host keys checked), root, python3 on the nodes.
key=$(awk '/keyFile:/ {gsub(/"/, "", $2); print $2; exit}' "$inv")
known=$(awk '/knownHostsFile:/ {gsub(/"/, "", $2); print $2; exit}' "$inv")
{
	echo "[all]"
	awk '/- name:/ {name=$3} /^    address:/ {print name " ansible_host=" $2}' "$inv"
} >"$work/hosts.ini"
cat >"$work/ansible.cfg" <<EOF
[defaults]
inventory = $work/hosts.ini
remote_user = root
private_key_file = $key
forks = $forks
host_key_checking = True
interpreter_python = /usr/bin/python3
stdout_callback = default
retry_files_enabled = False
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$known -o StrictHostKeyChecking=yes
EOF
cp "$here/ansible.yaml" "$here/motd.j2" "$work/"
mkdir -p "$work/kb"
cp "$here/kbootstrap.yaml" "$here/motd.tmpl" "$work/kb/"

# fresh: the state before a first run (no /etc/bench, an /etc/bench-old).
fresh() {
	"$work/kbootstrap" -i "$inv" --concurrency "$forks" exec -- 'rm -rf /etc/bench; mkdir -p /etc/bench-old' >/dev/null
}

# timed NAME CMD...: runs CMD, prints its wall time in seconds on stdout,
# keeps its output in $work/NAME.log.
timed() {
	local name=$1
	shift
	local start end
	start=$(date +%s.%N)
	if ! "$@" >"$work/$name.log" 2>&1; then
		echo "run.sh: $name failed:" >&2
		grep -m5 -E "FAILED|fatal|ERROR" "$work/$name.log" >&2 || true
		tail -30 "$work/$name.log" >&2
		exit 1
	fi
	end=$(date +%s.%N)
	echo "$end - $start" | bc -l
}

kb_run() { "$work/kbootstrap" -i "$inv" --concurrency "$forks" -o json playbook run "$work/kb/kbootstrap.yaml"; }
ansible_run() { (cd "$work" && ANSIBLE_CONFIG=$work/ansible.cfg ansible-playbook ansible.yaml); }

# changed COUNT check: both tools must report the same changes per host.
expect_kb() {
	local log=$work/$1.log want=$2
	local got
	got=$(sed -n '/^{/,$p' "$log" | python3 -c 'import json,sys; h=json.load(sys.stdin)["hosts"]; print(",".join(sorted({"%d/%d/%d" % (s["ok"], s["changed"], s["failed"]) for s in h.values()})), len(h))')
	[ "$got" = "$want" ] || { echo "run.sh: $1: recap $got, want $want" >&2; exit 1; }
}
expect_ansible() {
	local log=$work/$1.log want=$2
	local got
	got=$(awk '/PLAY RECAP/ {r=1; next} r && /ok=/ {for (i=1;i<=NF;i++) if ($i ~ /^(ok|changed|failed)=/) {split($i, a, "="); v[a[1]]=a[2]} ; print v["ok"] "/" v["changed"] "/" v["failed"]}' "$log" | sort -u | paste -sd, -)
	n=$(awk '/PLAY RECAP/ {r=1; next} r && /ok=/' "$log" | wc -l)
	[ "$got $n" = "$want" ] || { echo "run.sh: $1: recap $got on $n hosts, want $want" >&2; exit 1; }
}

# Ansible's modules need Python's standard library; the lab rootfs has only
# python3-minimal. Installed from Debian through the lab's NAT (not timed).
if ! "$work/kbootstrap" -i "$inv" --host node1 exec -- 'python3 -c "import shutil"' >/dev/null 2>&1; then
	echo "== installing python3 on the nodes for Ansible (not timed)" >&2
	"$work/kbootstrap" -i "$inv" --concurrency "$forks" exec -- \
		'export DEBIAN_FRONTEND=noninteractive; apt-get -qq update && apt-get install -y -qq --no-install-recommends python3 >/dev/null' >/dev/null
fi

echo "== warm-up (connections, page cache)" >&2
fresh
"$work/kbootstrap" -i "$inv" --concurrency "$forks" exec -- true >/dev/null

fresh
kb_first=$(timed kb-first kb_run)
expect_kb kb-first "10/10/0 $nodes"
kb_second=$(timed kb-second kb_run)
expect_kb kb-second "10/0/0 $nodes"

fresh
ansible_first=$(timed ansible-first ansible_run)
# Ansible counts its fact gathering as one more ok task.
expect_ansible ansible-first "11/10/0 $nodes"
ansible_second=$(timed ansible-second ansible_run)
expect_ansible ansible-second "11/0/0 $nodes"

printf '\n10-task playbook on %d lab nodes (forks/concurrency %d)\n' "$nodes" "$forks"
printf '%-28s %10s %10s %8s\n' "" kbootstrap ansible ratio
printf '%-28s %9.2fs %9.2fs %7.1fx\n' "first run (10 changes/host)" "$kb_first" "$ansible_first" "$(echo "$ansible_first / $kb_first" | bc -l)"
printf '%-28s %9.2fs %9.2fs %7.1fx\n' "second run (no change)" "$kb_second" "$ansible_second" "$(echo "$ansible_second / $kb_second" | bc -l)"
total_kb=$(echo "$kb_first + $kb_second" | bc -l)
total_ansible=$(echo "$ansible_first + $ansible_second" | bc -l)
printf '%-28s %9.2fs %9.2fs %7.1fx\n' "both runs" "$total_kb" "$total_ansible" "$(echo "$total_ansible / $total_kb" | bc -l)"
printf "ansible: %s (Debian), pipelining on, ControlPersist, gather_facts on (both tools gather facts)\n" "$(ansible-playbook --version 2>/dev/null | sed -n 1p)"
