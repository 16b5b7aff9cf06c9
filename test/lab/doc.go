// Package lab runs throw-away "VMs" for kbootstrap's end-to-end tests on one Linux machine, without
// Docker and without a hypervisor.
//
// A node is a network namespace attached to a lab bridge, plus its own mount, UTS, IPC and PID
// namespaces and its own root filesystem: an overlay whose lower directory is a cached
// debootstrap'ed Debian bookworm and whose upper directory belongs to the node (like a VM disk, it
// survives Stop/Start). PID 1 of a node is Debian's tini running /usr/local/sbin/lab-init, which
// starts Debian's OpenSSH sshd in the foreground. Root logs in with the lab's key, and so does the
// user vagrant (uid 1000, passwordless sudo). Each node has its own ed25519 host key, generated on
// the host before the node boots and written to the lab's known_hosts.
//
// Names. Everything a lab creates carries its ID (Config.ID, [a-z0-9]{1,5}):
//
//	network namespace   kb-<ID>-<node>            (/run/netns)
//	bridges             kb<ID>0 (main, host at .1), kb<ID>1 (second, no host address)
//	veth (host end)     kb<ID>-<index>-<network>  (inside the node: eth0, eth1)
//	mount sources       kblab-<ID>-<node>-...     (all mounted inside the node's mount namespace)
//	iptables rules      comment "kbootstrap-lab-<ID>" (nat MASQUERADE, filter FORWARD ACCEPT)
//	processes           environment KBOOTSTRAP_LAB_ID=<ID>, and all inside the lab's namespaces
//
// so that Down(ctx, dir, id) can find and remove all of it by name even when the state file is gone
// (a kill -9 of the process that ran Up, a crashed test).
//
// Files. Config.Dir holds id_ed25519 (the client key), known_hosts, kbootstrap.yaml (an inventory
// in kbootstrap's format), state.json and nodes/NAME/{upper,work,root,console.log,boot.sh,...}.
// console.log is the node's console: the boot script, lab-init and sshd -e write there, including a
// line when sshd dies. The rootfs is cached in $KBOOTSTRAP_LAB_CACHE (default
// /var/cache/kbootstrap-lab), built once under a lock and renamed into place.
//
// Networking. The main bridge has the host address .1 of Config.Subnet; nodes get .11, .12, ... in
// the order they were first created, and keep their address across Stop/Start. Outbound traffic is
// masqueraded (and net.ipv4.ip_forward is turned on while any lab is up; the last lab's Down puts
// back the value it had, recorded in /run/kbootstrap-lab) so that apt-get works inside a node; the
// rootfs carries fresh package lists, and nodes get the host's /etc/resolv.conf. The second bridge (Config.Subnet2) has no host address: the host cannot reach nodes that
// are only on it, a node on both networks can (a bastion).
//
// Processes. A node's processes run in a session of their own and outlive the process that called
// Up (a test binary, the lab command): the lab is found again with Load, or cleaned with Down. Stop
// SIGKILLs a node's PID 1 (the kernel kills the rest of its PID namespace) and waits until every
// process has exited. Exec runs a command as root inside a node with nsenter, in a clean
// environment (PATH, HOME=/root, LANG=C.UTF-8), without SSH.
//
// Reachability. Nodes on the main bridge reach the host's network (and the Debian mirror) through
// NAT. On some machines, such as this project's CI VMs, the upstream network accepts TCP
// connections to any address: a TCP connect succeeding proves nothing; wait for the SSH banner
// ("SSH-") instead, as Up does.
//
// Concurrency. Labs with different IDs and different subnets can be up at the same time (Go runs
// test packages in parallel); Up refuses a subnet already used on the machine. The rootfs is built
// once under a lock on the cache directory. A Lab's methods are safe for concurrent use.
//
// Kubernetes nodes (Config.Kubernetes; `make lab`, TestLabKubeadmProof). A second cached rootfs
// (KubernetesRootfsName) adds what a Vagrant box has before kubeadm: systemd, containerd, runc,
// containernetworking-plugins (/usr/lib/cni), iptables, conntrack, socat, ethtool, ebtables, kmod,
// haproxy (disabled until configured, for a load-balancer node), dnsutils. systemd is PID 1, so
// the unit files, drop-ins and timers the product writes run for real (kubeadm assumes systemd
// whenever systemctl exists). What keeps such a node from disturbing the host or another node:
//
//   - cgroups: before it boots, the node gets a cgroup named kblab-<ID>-<node> in every hierarchy
//     of the host (v1 controllers, name=systemd and the cgroup2 "unified" one), created under the
//     cgroup of the process that first brings it up (cpuset gets its parent's cpus and mems). Its
//     first process joins them, then unshares a cgroup namespace: inside, /sys/fs/cgroup is a
//     tmpfs with each hierarchy mounted as on the host, and the node's cgroup is the root. systemd
//     and the kubelet (cgroupfs driver) build their trees below it, so kubelets never see each
//     other's pods and no --cgroup-root is needed. Exec joins the node's cgroups too.
//   - /proc/sys is read-only except /proc/sys/net (the node's network namespace). The
//     non-namespaced sysctls the kubelet sets (ShieldedSysctls: kernel.panic, kernel.panic_on_oops,
//     vm.overcommit_memory, ...) are small files in nodes/NAME/sysctl/, holding the host's value at
//     first boot, mounted over the /proc/sys entries: the kubelet changes them, the host's values
//     never change. systemd-sysctl applies /etc/sysctl.d to what is writable (it ignores EROFS).
//   - /sys is read-only; /dev is a tmpfs with null, zero, full, random, urandom, tty, kmsg (the
//     kubelet's OOM watcher reads it), a devpts of its own and /dev/console on /dev/null.
//   - /var/lib/containerd, /var/lib/kubelet and /var/lib/etcd are host directories
//     (nodes/NAME/var/...): overlayfs refuses an overlay as an upper directory, so containerd's
//     overlayfs snapshotter cannot work on the node's root. They survive Stop/Start like the disk.
//   - Pods have network namespaces of their own inside the node (a CNI bridge in the node's
//     namespace); RoutePodCIDRs adds routes between the nodes' pod CIDRs in their namespaces.
//   - Stop kills the node's PID 1 and waits until its cgroups are empty; Down removes the cgroups
//     (found by name in every hierarchy, also after a crash) and Leftovers lists any left.
//
// The images directory next to the artifacts' bin (<artifacts>/../images, from make
// lab-artifacts) is mounted read-only at /opt/kbootstrap/images in Kubernetes nodes. Kubernetes
// nodes need a cgroup v1 or hybrid host (as this project's machines are).
//
// Everything here needs root, iproute2, iptables, util-linux (unshare, nsenter), openssh-client,
// and debootstrap (with the Debian mirror reachable) for the first build of the rootfs. The lab's
// own tests (TestLab*) skip, saying why, when these are missing:
//
//	cd test && go test -count=1 -v -run TestLab ./lab/    # or: make lab-test
package lab
