#!/usr/bin/env bash
# The machine's prerequisites for the lab, make demo and make test, checked in a
# second when they are all there and installed from Debian's packages when not
# (root). .ci/run, make demo and make test call it before any long build starts.
#
#   test/prereqs.sh demo    # what make demo needs (lab nodes, upstream builds)
#   test/prereqs.sh test    # the same, and what the test suite adds (vagrant, pssh)
set -euo pipefail
what=${1:-test}
case $what in demo | test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

# path-or-command package: one line each.
need=(
	"debootstrap debootstrap"      # the lab's rootfs
	"/usr/bin/tini tini"           # PID 1 of the minimal lab nodes
	"/usr/sbin/sshd openssh-server" # host keys for the nodes (ssh-keygen)
	"ssh-keygen openssh-client"
	"sudo sudo"
	"ip iproute2"                  # network namespaces, the lab bridge
	"/usr/sbin/xtables-nft-multi iptables" # lab routing; kube-proxy's image carries it
	"ps procps"
	"killall psmisc"
	"unshare util-linux"
	"nsenter util-linux"
	"flock util-linux"
	"/etc/ssl/certs/ca-certificates.crt ca-certificates"
	"make make"
	"ldd libc-bin"                 # images.sh finds iptables' libraries
	"/usr/sbin/ipset ipset"        # kube-router's image carries it (with iptables and ip)
	"awk mawk"
	"git git"
)
if [[ $what == test ]]; then
	need+=(
		"parallel-ssh pssh" # bench/exec compares against it
		"vagrant vagrant"   # vagrant validate of the Vagrantfile
		"/usr/share/doc/vagrant-libvirt vagrant-libvirt" # its provider (validate needs one)
		"gpg gpg"                   # the lab's apt repository is signed (TestUpgrade)
		"/usr/bin/gpg-agent gpg-agent"
		"gpgconf gpgconf"
		"dpkg-deb dpkg"             # its packages
	)
fi

missing=()
for n in "${need[@]}"; do
	read -r thing pkg <<<"$n"
	if [[ $thing == /* ]]; then
		[[ -e $thing ]] && continue
	else
		command -v "$thing" >/dev/null 2>&1 && continue
	fi
	[[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done
if ! command -v go >/dev/null 2>&1 && ! [[ -x /usr/local/go/bin/go ]]; then
	echo "prereqs: no Go toolchain (go on PATH or /usr/local/go/bin/go): install Go $(awk '/^go / {print $2}' "$(dirname "$0")/../go.mod") or later" >&2
	exit 2
fi
if ((${#missing[@]} == 0)); then
	echo "prereqs ($what): all there"
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "prereqs ($what): missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
	exit 2
fi
echo "prereqs ($what): installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "prereqs ($what): installed ${missing[*]}"
