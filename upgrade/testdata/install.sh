set -e
export DEBIAN_FRONTEND=noninteractive
apt-get -q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --no-install-recommends --allow-downgrades --allow-change-held-packages install /var/lib/kbootstrap/upgrade/v1.34.4/apt/debs/kubelet_*.deb /var/lib/kbootstrap/upgrade/v1.34.4/apt/debs/kubectl_*.deb >/dev/null
apt-mark hold kubelet kubectl >/dev/null
