#!/usr/bin/env bash
# Builds the container images a kubeadm cluster pulls, for the lab's air-gapped clusters, and the
# two binaries only images need (coredns, pause); caches them by version; installs them into OUT.
#
#   test/upstream/images.sh [OUT]      # OUT defaults to <repo>/.lab/artifacts; run build.sh first
#   UPSTREAM_SET=previous test/upstream/images.sh .lab/artifacts-previous
#     the previous minor's images (build.sh's previous set): coredns from coredns-previous/go.mod,
#     the etcd image with etcd alone; agnhost and kube-router are the current set's
#
# Needs OUT/bin from build.sh (kubeadm, kube-apiserver, kube-controller-manager, kube-scheduler,
# kube-proxy, etcd, etcdctl, etcdutl) and the host's iptables (kube-proxy's image carries it).
# Produces:
#   OUT/bin/coredns, OUT/bin/pause
#   OUT/images/<ref with / and : as _>.tar, one docker archive per image that
#     `kubeadm config images list --kubernetes-version <its version>` prints, tagged exactly so
#     (load with `ctr -n k8s.io images import FILE`), and agnhost (`kbootstrap verify`'s workload),
#     built from the kubernetes module, tagged as Kubernetes' e2e tests name it
#     (registry.k8s.io/e2e-test-images/agnhost:<test/images/agnhost/VERSION>), and kube-router (the
#     pod network init applies: routes and NetworkPolicy) built from network/go.mod, tagged
#     docker.io/cloudnativelabs/kube-router:<its version> (the upstream manifests' repository)
# Cache (${KBOOTSTRAP_LAB_CACHE:-/var/cache/kbootstrap-lab}/artifacts/):
#   images-tools-<hash>/bin/{coredns,pause,mkimages}    keyed by the images module's sources
#   agnhost-<k8s>-<hash>/bin/agnhost                      keyed by the kubernetes module's go.sum
#   kube-router-<v>-<hash>/bin/kube-router                keyed by the network module's go.mod/go.sum
#   images-<k8s>-etcd-<etcd>-coredns-<v>-<hash>/          keyed by versions, tools, input binaries
# Environment: KBOOTSTRAP_LAB_CACHE, FORCE=1 (rebuild), GO, UPSTREAM_SET (current or previous).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
MOD=$HERE/images
OUT=${1:-$REPO/.lab/artifacts}
CACHE_ROOT=${KBOOTSTRAP_LAB_CACHE:-/var/cache/kbootstrap-lab}
ART=$CACHE_ROOT/artifacts

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
T_START=$EPOCHREALTIME
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
step() {
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
	log "step: $name done in $(elapsed "$t0")s"
}

if [[ -z ${GO:-} ]]; then
	if command -v go >/dev/null; then GO=go; else GO=/usr/local/go/bin/go; fi
fi
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0

SET=${UPSTREAM_SET:-current}
INPUTS=(kubeadm kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd etcdctl etcdutl)
COREDNS_MOD=$MOD
case $SET in
current) ;;
previous) INPUTS=(kubeadm kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd) COREDNS_MOD=$HERE/coredns-previous ;;
*) die "UPSTREAM_SET must be current or previous, not '$SET'" ;;
esac
for b in "${INPUTS[@]}"; do
	[[ -x $OUT/bin/$b ]] || die "$OUT/bin/$b is missing: run test/upstream/build.sh $OUT first"
done
command -v ldd >/dev/null || die "ldd is missing (apt-get install libc-bin)"
[[ -x /usr/sbin/xtables-nft-multi ]] || die "/usr/sbin/xtables-nft-multi is missing (apt-get install iptables): kube-proxy's image carries it"

K8S_VERSION=$("$OUT/bin/kubeadm" version -o short)
mapfile -t REFS < <("$OUT/bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
((${#REFS[@]} >= 7)) || die "kubeadm config images list printed ${#REFS[@]} images: ${REFS[*]}"
COREDNS_VERSION=$(cd "$COREDNS_MOD" && "$GO" list -m -f '{{.Version}}' github.com/coredns/coredns)
[[ $COREDNS_VERSION == v1.* ]] || die "$COREDNS_MOD/go.mod requires no coredns v1"
ETCD_VERSION=$("$OUT/bin/etcd" --version | awk '/etcd Version/ { print $3 }')
# agnhost comes from the current set's kubernetes module (verify's workload names one agnhost
# whatever the cluster's version), at the version kubeadm reports in the current set.
K8S_MOD=$HERE/kubernetes
AGNHOST_K8S=$(cd "$K8S_MOD" && "$GO" list -m -f '{{.Version}}' k8s.io/kubernetes)
[[ $SET != current || $AGNHOST_K8S == "$K8S_VERSION" ]] || die "$K8S_MOD/go.mod is not kubernetes $K8S_VERSION"
# go mod download: the module's directory, fetched first on a machine that lacks it.
K8S_DIR=$(cd "$K8S_MOD" && "$GO" mod download -json "k8s.io/kubernetes@$AGNHOST_K8S" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -n $K8S_DIR && -d $K8S_DIR ]] || die "go mod download k8s.io/kubernetes@$AGNHOST_K8S in $K8S_MOD gave no directory"
AGNHOST_VERSION=$(<"$K8S_DIR/test/images/agnhost/VERSION")
[[ $AGNHOST_VERSION =~ ^[0-9]+\.[0-9]+$ ]] || die "$K8S_DIR/test/images/agnhost/VERSION: unexpected version $AGNHOST_VERSION"
REFS+=("registry.k8s.io/e2e-test-images/agnhost:$AGNHOST_VERSION")
NET_MOD=$HERE/network
KUBE_ROUTER_VERSION=$(cd "$NET_MOD" && "$GO" list -m -f '{{.Version}}' github.com/cloudnativelabs/kube-router/v2)
[[ $KUBE_ROUTER_VERSION == v2.* ]] || die "$NET_MOD/go.mod requires no kube-router v2"
REFS+=("docker.io/cloudnativelabs/kube-router:$KUBE_ROUTER_VERSION")
command -v ipset >/dev/null || [[ -x /usr/sbin/ipset ]] || die "/usr/sbin/ipset is missing (apt-get install ipset): kube-router's image carries it"
for r in "${REFS[@]}"; do
	case $r in
	*/coredns:*) [[ ${r##*:} == "$COREDNS_VERSION" ]] || die "kubeadm wants $r, images/go.mod builds coredns $COREDNS_VERSION" ;;
	*/etcd:*) [[ ${r##*:} == "$ETCD_VERSION"-* ]] || die "kubeadm wants $r, the etcd binary is $ETCD_VERSION" ;;
	esac
done

TOOLS_HASH=$(cd "$HERE" && cat images/go.mod images/go.sum $(find images/cmd -name '*.go' | sort) | sha256sum | cut -c1-12)
TOOLS=$ART/images-tools-$TOOLS_HASH
if [[ $SET == previous ]]; then
	TOOLS_HASH=$( (echo "$TOOLS_HASH"; cat "$COREDNS_MOD/go.mod" "$COREDNS_MOD/go.sum") | sha256sum | cut -c1-12)
	TOOLS=$ART/images-tools-previous-$TOOLS_HASH
fi
SRC_HASH=$( (echo "$TOOLS_HASH"; cat "$HERE/images.sh") | sha256sum | cut -c1-12)
AGNHOST=$ART/agnhost-$AGNHOST_K8S-$(cat "$K8S_MOD/go.mod" "$K8S_MOD/go.sum" | sha256sum | cut -c1-12)
KUBE_ROUTER=$ART/kube-router-$KUBE_ROUTER_VERSION-$(cat "$NET_MOD/go.mod" "$NET_MOD/go.sum" | sha256sum | cut -c1-12)
IN_HASH=$( (cd "$OUT/bin" && stat -L -c "%n %s %Y" "${INPUTS[@]}"; echo "$AGNHOST $KUBE_ROUTER"; dpkg-query -W ipset iproute2 2>/dev/null; dpkg-query -W iptables 2>/dev/null; printf '%s\n' "${REFS[@]}") | sha256sum | cut -c1-12)
KEY=images-$K8S_VERSION-etcd-v$ETCD_VERSION-coredns-$COREDNS_VERSION-$IN_HASH-$SRC_HASH
CACHE_DIR=$ART/$KEY
mkdir -p "$ART"
exec 9>"$ART/.images.lock"
if ! flock -n 9; then
	log "another images build is running; waiting for $ART/.images.lock"
	flock 9
fi

build_tools() {
	local tmp
	tmp=$(mktemp -d "$ART/.images-tools.tmp.XXXXXX")
	chmod 0755 "$tmp"
	mkdir -p "$tmp/bin"
	(cd "$MOD" && "$GO" mod download && "$GO" build -mod=readonly -trimpath -ldflags '-s -w' -o "$tmp/bin/" ./cmd/pause ./cmd/mkimages) ||
		{ rm -rf "$tmp"; die "go build of pause, mkimages failed"; }
	if [[ $COREDNS_MOD == "$MOD" ]]; then
		(cd "$MOD" && "$GO" build -mod=readonly -trimpath -ldflags '-s -w' -o "$tmp/bin/" ./cmd/coredns)
	else
		(cd "$COREDNS_MOD" && "$GO" mod download && "$GO" build -mod=readonly -trimpath -ldflags '-s -w' -o "$tmp/bin/coredns" .)
	fi || { rm -rf "$tmp"; die "go build of coredns $COREDNS_VERSION failed"; }
	# Not `coredns -version | grep -q`: under pipefail, grep exits at the first
	# line and coredns, writing its version in two writes, dies of SIGPIPE.
	local v
	v=$("$tmp/bin/coredns" -version) || { rm -rf "$tmp"; die "coredns -version failed"; }
	[[ $v == *"CoreDNS-${COREDNS_VERSION#v}"* ]] || { rm -rf "$tmp"; die "coredns -version is not $COREDNS_VERSION: $v"; }
	rm -rf "$TOOLS"
	mv "$tmp" "$TOOLS"
}
build_agnhost() {
	local tmp
	tmp=$(mktemp -d "$ART/.agnhost.tmp.XXXXXX")
	chmod 0755 "$tmp"
	mkdir -p "$tmp/bin"
	(cd "$K8S_MOD" && "$GO" build -mod=readonly -trimpath -ldflags '-s -w' -o "$tmp/bin/agnhost" k8s.io/kubernetes/test/images/agnhost) ||
		{ rm -rf "$tmp"; die "go build of agnhost failed"; }
	"$tmp/bin/agnhost" --help >/dev/null || { rm -rf "$tmp"; die "agnhost --help failed"; }
	rm -rf "$AGNHOST"
	mv "$tmp" "$AGNHOST"
}
build_kube_router() {
	local tmp v
	tmp=$(mktemp -d "$ART/.kube-router.tmp.XXXXXX")
	chmod 0755 "$tmp"
	mkdir -p "$tmp/bin"
	(cd "$NET_MOD" && "$GO" mod download && "$GO" build -mod=readonly -trimpath \
		-ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
		-o "$tmp/bin/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) ||
		{ rm -rf "$tmp"; die "go build of kube-router failed"; }
	v=$("$tmp/bin/kube-router" --version 2>&1) || { rm -rf "$tmp"; die "kube-router --version failed: $v"; }
	[[ $v == *"$KUBE_ROUTER_VERSION"* ]] || { rm -rf "$tmp"; die "kube-router --version is not $KUBE_ROUTER_VERSION: $v"; }
	rm -rf "$KUBE_ROUTER"
	mv "$tmp" "$KUBE_ROUTER"
}
build_images() {
	local tmp
	tmp=$(mktemp -d "$ART/.$KEY.tmp.XXXXXX")
	chmod 0755 "$tmp"
	mkdir -p "$tmp/bin" "$tmp/images"
	cp "$TOOLS/bin/coredns" "$TOOLS/bin/pause" "$AGNHOST/bin/agnhost" "$KUBE_ROUTER/bin/kube-router" "$tmp/bin/"
	for b in "${INPUTS[@]}"; do ln "$OUT/bin/$b" "$tmp/bin/$b" 2>/dev/null || cp "$OUT/bin/$b" "$tmp/bin/$b"; done
	"$TOOLS/bin/mkimages" -bin "$tmp/bin" -out "$tmp/images" "${REFS[@]}" >&2 || { rm -rf "$tmp"; die "mkimages failed"; }
	for b in "${INPUTS[@]}" agnhost kube-router; do rm -f "$tmp/bin/$b"; done
	printf '%s\n' "${REFS[@]}" >"$tmp/IMAGES"
	rm -rf "$CACHE_DIR"
	mv "$tmp" "$CACHE_DIR"
}
install_out() {
	local f b
	mkdir -p "$OUT/bin" "$OUT/images"
	for b in coredns pause; do
		[[ -e $OUT/bin/$b && $CACHE_DIR/bin/$b -ef $OUT/bin/$b ]] && continue
		rm -f "$OUT/bin/.$b.new"
		ln "$CACHE_DIR/bin/$b" "$OUT/bin/.$b.new" 2>/dev/null || cp "$CACHE_DIR/bin/$b" "$OUT/bin/.$b.new"
		mv -f "$OUT/bin/.$b.new" "$OUT/bin/$b"
	done
	# Only this version's images in OUT/images.
	for f in "$OUT/images/"*.tar; do
		[[ -e $f && ! -e $CACHE_DIR/images/${f##*/} ]] && rm -f "$f"
	done
	for f in "$CACHE_DIR/images/"*.tar; do
		[[ -e $OUT/images/${f##*/} && $f -ef $OUT/images/${f##*/} ]] && continue
		rm -f "$OUT/images/${f##*/}"
		ln "$f" "$OUT/images/" 2>/dev/null || cp "$f" "$OUT/images/"
	done
	log "installed coredns, pause into $OUT/bin and ${#REFS[@]} images into $OUT/images"
}

if [[ -n ${FORCE:-} || ! -x $TOOLS/bin/mkimages || ! -x $TOOLS/bin/coredns || ! -x $TOOLS/bin/pause ]]; then
	step "go build coredns $COREDNS_VERSION, pause, mkimages" build_tools
else
	log "using cached tools from $TOOLS/bin"
fi
if [[ -n ${FORCE:-} || ! -x $AGNHOST/bin/agnhost ]]; then
	step "go build agnhost $AGNHOST_VERSION (kubernetes $K8S_VERSION)" build_agnhost
else
	log "using cached agnhost from $AGNHOST/bin"
fi
if [[ -n ${FORCE:-} || ! -x $KUBE_ROUTER/bin/kube-router ]]; then
	step "go build kube-router $KUBE_ROUTER_VERSION" build_kube_router
else
	log "using cached kube-router from $KUBE_ROUTER/bin"
fi
if [[ -n ${FORCE:-} || ! -f $CACHE_DIR/IMAGES ]]; then
	step "images (${REFS[*]})" build_images
else
	log "using cached images from $CACHE_DIR/images"
fi
step "install" install_out
# Older builds of this cache go (another version's stay: they are named by it).
tools_glob="$ART/images-tools-[0-9a-f]*"
[[ $SET == current ]] || tools_glob="$ART/images-tools-previous-*"
# shellcheck disable=SC2086 # the glob
for d in $tools_glob "$ART/agnhost-$AGNHOST_K8S-"* "$ART/kube-router-$KUBE_ROUTER_VERSION-"* "$ART/images-$K8S_VERSION-etcd-v$ETCD_VERSION-coredns-$COREDNS_VERSION-"*; do
	[[ -d $d && $d != "$TOOLS" && $d != "$AGNHOST" && $d != "$KUBE_ROUTER" && $d != "$CACHE_DIR" ]] && rm -rf "$d"
done
log "total $(elapsed "$T_START")s"
