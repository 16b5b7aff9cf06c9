#!/usr/bin/env bash
# Builds the upstream Kubernetes and etcd binaries the lab tests run, caches them
# by version and installs them into an output directory.
#
#   test/upstream/build.sh [OUT]        # OUT defaults to <repo>/.lab/artifacts
#   UPSTREAM_SET=previous test/upstream/build.sh .lab/artifacts-previous
#
# Two sets: current (kubernetes/ and etcd/: the lab's version) and previous
# (kubernetes-previous/ and etcd-previous/: the minor before it, which upgrade
# tests start from; its etcd set is the server alone, the version kubeadm names,
# whose etcdctl and etcdutl the module proxy does not serve). OUT/VERSION holds
# the Kubernetes version.
#
# The binaries are built in a temp dir, each one is asked for its version, and
# the directory is then renamed to
#   ${KBOOTSTRAP_LAB_CACHE:-/var/cache/kbootstrap-lab}/artifacts/k8s-<ver>-etcd-<ver>/bin/
# and hard-linked (or copied) into OUT/bin/. A present cache means no build.
#
# Environment:
#   KBOOTSTRAP_LAB_CACHE  cache root (default /var/cache/kbootstrap-lab)
#   ONLY=kubeadm,etcd     build/install only these binaries (quick iterations;
#                         kept in <key>.partial/, never in the complete cache)
#   FORCE=1               rebuild even if the cache is present
#   GO                    go command (default: go on PATH, else /usr/local/go/bin/go)
#   K8S_GIT_COMMIT, ETCD_GIT_SHA   optional commit stamps (left unset by default)
#   SOURCE_DATE_EPOCH     buildDate stamp (default: the kubernetes tag's time)
#   UPSTREAM_SET          current (default) or previous
#
# Versions come from kubernetes/go.mod and etcd/go.mod (see README.md to bump).
# shellcheck disable=SC2317 # functions run through step()
set -euo pipefail

log() { printf '[upstream] %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
elapsed() { # elapsed START: seconds since START (an $EPOCHREALTIME)
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}
step() { # step NAME CMD...: runs CMD and prints how long it took
	local name=$1 t0=$EPOCHREALTIME
	shift
	log "step: $name ..."
	# A line every 30 s while it runs (a cold build is silent for minutes); the
	# loop ends with the step, or with this script when the step fails.
	(while sleep 30 </dev/null >/dev/null 2>&1 9>&- && kill -0 $$ 2>/dev/null; do log "  $name: still running ($(elapsed "$t0")s)"; done) &
	local hb=$!
	"$@"
	kill "$hb" 2>/dev/null || true
	wait "$hb" 2>/dev/null || true
	log "step: $name: done in $(elapsed "$t0")s"
}
wanted() { [[ -n ${WANT[$1]:-} ]]; }
have_all() { # have_all DIR: DIR/bin holds every wanted binary
	local b
	for b in "${WANTED[@]}"; do [[ -x $1/bin/$b ]] || return 1; done
}

install_from() { # install_from SRC_BIN_DIR: into OUT/bin, by hard link or copy
	local src=$1 b
	mkdir -p "$OUT/bin"
	for b in "${WANTED[@]}"; do
		[[ -e $OUT/bin/$b && $src/$b -ef $OUT/bin/$b ]] && continue # same file already
		rm -f "$OUT/bin/.$b.new"
		ln "$src/$b" "$OUT/bin/.$b.new" 2>/dev/null || cp "$src/$b" "$OUT/bin/.$b.new"
		# rename, so that a running copy of the old binary is never written to
		mv -f "$OUT/bin/.$b.new" "$OUT/bin/$b"
	done
	echo "$K8S_VERSION" >"$OUT/VERSION.new" && mv -f "$OUT/VERSION.new" "$OUT/VERSION"
	log "installed ${WANTED[*]} into $OUT/bin ($K8S_VERSION in $OUT/VERSION)"
}

download() {
	if ((${#K8S_PKGS[@]})); then (cd "$K8S_MOD" && "$GO" mod download); fi
	if ((${#ETCD_PKGS[@]})); then (cd "$ETCD_MOD" && "$GO" mod download); fi
}
# One `go build` per module: the packages shared by the binaries are compiled
# once and the compiles and links of different binaries overlap on both cores.
build_k8s() {
	(cd "$K8S_MOD" && "$GO" build -mod=readonly -trimpath -tags "$K8S_TAGS" \
		-ldflags "$K8S_LDFLAGS" -o "$TMP/bin/" "${K8S_PKGS[@]}")
}
build_etcd() {
	(cd "$ETCD_MOD" && "$GO" build -mod=readonly -trimpath -ldflags "$ETCD_LDFLAGS" \
		-o "$TMP/bin/" "${ETCD_PKGS[@]}")
	# go names a binary after the element before a /vN suffix: server/v3 -> server
	if [[ -e $TMP/bin/server ]]; then mv "$TMP/bin/server" "$TMP/bin/etcd"; fi
}

expect() { # expect NAME WANT CMD...: CMD must succeed and print WANT
	local name=$1 want=$2 out
	shift 2
	out=$("$@" 2>&1) || die "$name: '$*' failed: $out"
	[[ $out == *"$want"* ]] || die "$name: '$*' printed '$out', expected '$want'"
	log "  $name: $(head -n1 <<<"$out")"
}
verify() {
	local b v d=$TMP/bin e=${ETCD_VERSION#v}
	for b in "${WANTED[@]}"; do
		[[ -x $d/$b ]] || die "missing $b"
		# No `| grep -q` under pipefail: grep exits at the first match and the
		# writer can die of SIGPIPE, failing the pipeline.
		v=$("$GO" version -m "$d/$b") || die "go version -m $b failed"
		[[ $v == *CGO_ENABLED=0* ]] || die "$b is not a CGO_ENABLED=0 build"
		case $b in
		kubeadm)
			v=$("$d/kubeadm" version -o short) || die "kubeadm version failed"
			[[ $v == "$K8S_VERSION" ]] || die "kubeadm version -o short = '$v', want $K8S_VERSION"
			log "  kubeadm: $v"
			;;
		kubectl) KUBECONFIG=$TMP/none expect kubectl "Client Version: $K8S_VERSION" "$d/kubectl" version --client ;;
		etcd) expect etcd "etcd Version: $e" "$d/etcd" --version ;;
		etcdctl) expect etcdctl "etcdctl version: $e" "$d/etcdctl" version ;;
		etcdutl) expect etcdutl "etcdutl version: $e" "$d/etcdutl" version ;;
		*) expect "$b" "Kubernetes $K8S_VERSION" "$d/$b" --version ;;
		esac
	done
}
buildinfo() {
	chmod 0555 "$TMP/bin/"*
	{
		echo "key: $KEY"
		echo "kubernetes: $K8S_VERSION (staging modules $STAGING_VERSION)"
		echo "etcd: $ETCD_VERSION"
		echo "go: $("$GO" version)"
		echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
		echo "env: CGO_ENABLED=0, -trimpath"
		echo "k8s tags: $K8S_TAGS"
		echo "k8s ldflags: $K8S_LDFLAGS"
		echo "etcd ldflags: $ETCD_LDFLAGS"
		echo "sha256:"
		(cd "$TMP/bin" && sha256sum "${WANTED[@]}" | sed 's/^/  /')
	} >"$TMP/BUILDINFO"
}
commit() {
	local b old=
	if [[ -z ${ONLY:-} ]]; then
		if [[ -e $CACHE_DIR ]]; then # FORCE=1 rebuild
			old="$ART/.$KEY.old.$$"
			mv "$CACHE_DIR" "$old"
		fi
		mv "$TMP" "$CACHE_DIR"
		[[ -z $old ]] || rm -rf "$old"
		rm -rf "$PARTIAL_DIR"
		log "cache: $CACHE_DIR"
	else
		mkdir -p "$PARTIAL_DIR/bin"
		for b in "${WANTED[@]}"; do mv -f "$TMP/bin/$b" "$PARTIAL_DIR/bin/$b"; done
		log "cache (partial, ONLY=): $PARTIAL_DIR"
	fi
}

on_exit() {
	local rc=$?
	rm -rf "$TMP"
	((rc == 0)) || log "FAILED (exit $rc); nothing was cached"
}

main() {
	T_START=$EPOCHREALTIME
	HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	REPO=$(cd "$HERE/../.." && pwd)

	SET=${UPSTREAM_SET:-current}
	case $SET in
	current) K8S_MOD=$HERE/kubernetes ETCD_MOD=$HERE/etcd ;;
	previous) K8S_MOD=$HERE/kubernetes-previous ETCD_MOD=$HERE/etcd-previous ;;
	*) die "UPSTREAM_SET must be current or previous, not '$SET'" ;;
	esac
	# --- versions: the go.mod files are the single source of truth ---
	K8S_VERSION=$(grep -oE '^[[:space:]]*(require[[:space:]]+)?k8s\.io/kubernetes v[0-9][^[:space:]]*' "$K8S_MOD/go.mod" | awk '{print $NF}' | head -n1)
	ETCD_VERSION=$(grep -oE '^[[:space:]]*(require[[:space:]]+)?go\.etcd\.io/etcd/server/v3 v[0-9][^[:space:]]*' "$ETCD_MOD/go.mod" | awk '{print $NF}' | head -n1)
	[[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "cannot read the k8s.io/kubernetes version from kubernetes/go.mod (got '$K8S_VERSION')"
	K8S_MINOR=${BASH_REMATCH[1]}
	STAGING_VERSION="v0.${K8S_MINOR}.${BASH_REMATCH[2]}"
	[[ $ETCD_VERSION =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "cannot read the etcd version from etcd/go.mod (got '$ETCD_VERSION')"
	local bad
	# every staging replace must follow the kubernetes version (v1.X.Y <-> v0.X.Y)
	if bad=$(grep -E '^[[:space:]]*k8s\.io/[a-z0-9-]+ => k8s\.io/' "$K8S_MOD/go.mod" | grep -v " $STAGING_VERSION\$"); then
		die "$K8S_MOD/go.mod: staging replaces not at $STAGING_VERSION:"$'\n'"$bad"
	fi

	KEY="k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
	CACHE_ROOT=${KBOOTSTRAP_LAB_CACHE:-/var/cache/kbootstrap-lab}
	ART="$CACHE_ROOT/artifacts"
	CACHE_DIR="$ART/$KEY"           # the complete, verified set; present => used
	PARTIAL_DIR="$ART/$KEY.partial" # binaries built with ONLY=
	OUT=${1:-$REPO/.lab/artifacts}

	K8S_BINS=(kubeadm kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
	ETCD_BINS=(etcd etcdctl etcdutl)
	if [[ $SET == previous ]]; then ETCD_BINS=(etcd); fi
	ALL_BINS=("${K8S_BINS[@]}" "${ETCD_BINS[@]}")
	declare -gA WANT=()
	local b
	if [[ -n ${ONLY:-} ]]; then
		local -a only
		IFS=, read -ra only <<<"$ONLY"
		for b in "${only[@]}"; do
			b=${b//[[:space:]]/}
			[[ -n $b ]] || continue
			[[ " ${ALL_BINS[*]} " == *" $b "* ]] || die "ONLY: unknown binary '$b' (known: ${ALL_BINS[*]})"
			WANT[$b]=1
		done
		((${#WANT[@]})) || die "ONLY is set but names no binary"
	else
		for b in "${ALL_BINS[@]}"; do WANT[$b]=1; done
	fi
	WANTED=()
	for b in "${ALL_BINS[@]}"; do if wanted "$b"; then WANTED+=("$b"); fi; done

	# --- one build at a time per cache key ---
	mkdir -p "$ART"
	exec 9>"$ART/.$KEY.lock"
	if ! flock -n 9; then
		log "another build of $KEY holds $ART/.$KEY.lock; waiting"
		local t0=$EPOCHREALTIME
		flock 9
		log "got the lock after $(elapsed "$t0")s"
	fi

	# --- warm: the cache is present ---
	if [[ -z ${FORCE:-} ]]; then
		local from=
		if have_all "$CACHE_DIR"; then
			from=$CACHE_DIR
		elif [[ -n ${ONLY:-} ]] && have_all "$PARTIAL_DIR"; then
			from=$PARTIAL_DIR
		fi
		if [[ -n $from ]]; then
			log "using the cache: $from/bin (no build)"
			step "install" install_from "$from/bin"
			log "total: $(elapsed "$T_START")s"
			return 0
		fi
	fi

	# --- cold: build ---
	if [[ -z ${GO:-} ]]; then
		if command -v go >/dev/null; then GO=go; else GO=/usr/local/go/bin/go; fi
	fi
	export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
	log "building $KEY ($([[ -n ${ONLY:-} ]] && echo "ONLY: ${WANTED[*]}" || echo all)) with $("$GO" version)"

	TMP=$(mktemp -d "$ART/.$KEY.tmp.XXXXXX") # same filesystem as the cache: rename
	chmod 0755 "$TMP"                         # mktemp makes 0700; others read the cache
	trap on_exit EXIT
	mkdir -p "$TMP/bin"

	# buildDate: the kubernetes tag's time, so that rebuilds are reproducible
	if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
		BUILD_DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
	else
		BUILD_DATE=$(cd "$K8S_MOD" && "$GO" list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes 2>/dev/null) || true
		[[ -n $BUILD_DATE ]] || BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	fi
	# as upstream's hack/lib/version.sh: both version packages get the stamp
	K8S_LDFLAGS="-s -w"
	local pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
		K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE"
		if [[ -n ${K8S_GIT_COMMIT:-} ]]; then K8S_LDFLAGS+=" -X $pkg.gitCommit=$K8S_GIT_COMMIT"; fi
	done
	# as upstream's hack/lib/golang.sh for release (non-debug) builds
	K8S_TAGS=selinux,notest,grpcnotrace
	ETCD_LDFLAGS="-s -w"
	if [[ -n ${ETCD_GIT_SHA:-} ]]; then ETCD_LDFLAGS+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_GIT_SHA"; fi

	K8S_PKGS=()
	for b in "${K8S_BINS[@]}"; do if wanted "$b"; then K8S_PKGS+=("k8s.io/kubernetes/cmd/$b"); fi; done
	ETCD_PKGS=()
	if wanted etcd; then ETCD_PKGS+=(go.etcd.io/etcd/server/v3); fi
	if wanted etcdctl; then ETCD_PKGS+=(go.etcd.io/etcd/etcdctl/v3); fi
	if wanted etcdutl; then ETCD_PKGS+=(go.etcd.io/etcd/etcdutl/v3); fi

	step "go mod download" download
	# kubernetes and etcd one after the other: each `go build` already keeps
	# both cores busy (-p 2); running both at once only adds contention.
	if ((${#K8S_PKGS[@]})); then step "go build kubernetes (${K8S_PKGS[*]##*/})" build_k8s; fi
	if ((${#ETCD_PKGS[@]})); then step "go build etcd (${ETCD_PKGS[*]})" build_etcd; fi
	step "verify versions" verify
	step "record BUILDINFO" buildinfo
	step "commit to the cache" commit
	if [[ -z ${ONLY:-} ]]; then
		step "install" install_from "$CACHE_DIR/bin"
	else
		step "install" install_from "$PARTIAL_DIR/bin"
	fi
	log "total: $(elapsed "$T_START")s"
}

main "$@"; exit # one line: bash has read all of it before running (safe to edit meanwhile)
