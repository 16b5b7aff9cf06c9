set -e
export DEBIAN_FRONTEND=noninteractive
dpkg --force-confdef --force-confold -i /var/lib/kbootstrap/upgrade/before-v1.34.4/apt/debs/*.deb >/dev/null
apt-mark hold kubeadm kubelet kubectl >/dev/null
cp -p /var/lib/kbootstrap/upgrade/before-v1.34.4/apt/kubernetes.list /etc/apt/sources.list.d/kubernetes.list
cp -p /var/lib/kbootstrap/upgrade/before-v1.34.4/apt/keyring /etc/apt/keyrings/kubernetes-apt-keyring.gpg
