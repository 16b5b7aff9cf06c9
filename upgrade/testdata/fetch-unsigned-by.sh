set -e
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
d=/var/lib/kbootstrap/upgrade/v1.34.4/apt-before; uri=https://pkgs.k8s.io/core:/stable:/v1.33/deb/
a="-q -o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=$d/parts.d -o Dir::State::Lists=$d/lists -o Dir::Cache=$d/cache -o APT::Sandbox::User=root"
rm -rf "$d/lists" "$d/cache" "$d/debs"
mkdir -p "$d/parts.d" "$d/lists/partial" "$d/cache/archives/partial" "$d/debs"
printf 'deb %s%s /\n' '' "$uri" > "$d/sources.list"
apt-get $a update >/dev/null
cd "$d/debs"
for w in kubeadm=1.33.13-1.1; do
  p=${w%%=*}; v=${w#*=}
  got=$(apt-cache $a madison "$p" | awk -F' *[|] *' -v v="$v" '$2 == v || index($2, v "-") == 1 {print $2}' | sort -V | tail -n 1)
  if [ -z "$got" ]; then
    echo "$uri has no package $p $v (it has: $(apt-cache $a madison "$p" | awk -F' *[|] *' '{print $2}' | tr '\n' ' '))" >&2
    exit 2
  fi
  apt-get $a download "$p=$got" >/dev/null
done
