set -e
d=/var/lib/kbootstrap/upgrade/v1.34.4/apt; s=/var/lib/kbootstrap/upgrade/v1.34.4
rm -rf "$d/x"; mkdir "$d/x"
for f in "$d"/debs/*.deb; do dpkg-deb -x "$f" "$d/x"; done
for b in kubeadm kubelet kubectl; do install -m 0755 "$d/x/usr/bin/$b" "$s/$b"; done
rm -rf "$d/x"
