package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The rootfs every node's overlay sits on. Changing anything here changes the cache key.
const (
	rootfsSuite   = "bookworm"
	rootfsVersion = "1" // bump when the build procedure changes in a way the hash does not see
)

// RootfsPackages are installed by debootstrap on top of --variant=minbase.
var RootfsPackages = []string{
	"openssh-server", "sudo", "iproute2", "tini", "procps", "iputils-ping",
	"ca-certificates", "less", "kmod", "python3-minimal",
}

// KubernetesPackages are added to RootfsPackages in the rootfs of Kubernetes nodes
// (Config.Kubernetes): what a Vagrant box has before kubeadm, systemd as init, haproxy for a
// load-balancer node and dig/nslookup. Everything comes from Debian bookworm.
var KubernetesPackages = []string{
	"systemd", "systemd-sysv", "dbus", "libpam-systemd",
	"containerd", "runc", "containernetworking-plugins",
	"iptables", "conntrack", "socat", "ethtool", "ebtables", "ipset", "haproxy",
	"dnsutils", "curl", "cron",
}

// rootfsVariant is one flavour of the cached rootfs.
type rootfsVariant struct {
	tag      string // "" (minimal) or "k8s": part of the cache name
	packages []string
	setup    string // runs after setupScript, in the same chroot
}

var (
	minimalRootfs    = rootfsVariant{packages: RootfsPackages}
	kubernetesRootfs = rootfsVariant{tag: "k8s", setup: kubernetesSetupScript,
		packages: append(append([]string(nil), RootfsPackages...), KubernetesPackages...)}
)

func variantFor(kubernetes bool) rootfsVariant {
	if kubernetes {
		return kubernetesRootfs
	}
	return minimalRootfs
}

// kubernetesSetupScript makes the rootfs boot with systemd as PID 1 inside a lab node, as kind's
// node image does: units that would touch the kernel or the host's devices are masked (a node has
// no udev, no consoles and loads no kernel modules), systemd-sysctl applies what a node may change
// (the lab mounts /proc/sys read-only except /proc/sys/net, the node's own network namespace;
// systemd-sysctl ignores EROFS, as in any container), the journal stays in memory, and haproxy
// starts only once the product enables it. containerd and sshd start at boot, as on a VM.
const kubernetesSetupScript = `
systemctl mask \
	systemd-modules-load.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
	proc-sys-fs-binfmt_misc.mount sys-kernel-config.mount sys-kernel-debug.mount \
	sys-kernel-tracing.mount sys-fs-fuse-connections.mount dev-hugepages.mount \
	systemd-remount-fs.service systemd-firstboot.service systemd-hwdb-update.service \
	systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
	systemd-journald-audit.socket systemd-pstore.service systemd-timesyncd.service \
	getty@tty1.service console-getty.service getty.target \
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer
mkdir -p /etc/systemd/system/systemd-sysctl.service.d
cat > /etc/systemd/system/systemd-sysctl.service.d/kbootstrap-lab.conf <<'LABEOF'
# kbootstrap lab: /proc/sys is read-only in a node except /proc/sys/net (the node's own network
# namespace) and the entries the kubelet sets (small files the lab mounts over them).
[Unit]
ConditionPathIsReadWrite=
ConditionPathIsReadWrite=/proc/sys/net/
LABEOF
mkdir -p /etc/systemd/journald.conf.d
cat > /etc/systemd/journald.conf.d/kbootstrap-lab.conf <<'LABEOF'
[Journal]
Storage=volatile
RuntimeMaxUse=64M
LABEOF
systemctl disable haproxy.service
systemctl enable containerd.service ssh.service
systemctl set-default multi-user.target
apt-get clean
`

// initScript is /usr/local/sbin/lab-init in the rootfs: tini (PID 1) runs it.
const initScript = `#!/bin/sh
# kbootstrap lab node init, run by tini as PID 1's only child. Starts Debian's OpenSSH sshd in the
# foreground; its log (-e) and a line when it dies go to the node's console, which the host keeps
# in <lab dir>/nodes/<node>/console.log.
log() { echo "lab-init[$(hostname)]: $(date -u +%Y-%m-%dT%H:%M:%SZ) $*"; }
mkdir -p /run/sshd
chmod 0755 /run/sshd
log "starting /usr/sbin/sshd -D -e"
/usr/sbin/sshd -D -e
rc=$?
log "SSHD DIED: /usr/sbin/sshd exited with status $rc; the node stays up without sshd (restart it with: lab exec $(hostname) -- /usr/sbin/sshd)"
exec sleep infinity
`

// setupScript configures the rootfs after debootstrap; it runs in a chroot of it.
const setupScript = `set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
# Vagrant's user: uid 1000, passwordless sudo, login by key only ('*' = no password, not locked).
useradd --create-home --uid 1000 --user-group --groups sudo --shell /bin/bash vagrant
usermod --password '*' vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 0700 /root/.ssh
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
cat > /etc/ssh/sshd_config.d/lab.conf <<'EOF'
# kbootstrap lab: keys only; the host key is generated per node by the lab, on the host.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
# No host keys in the image: each node gets its own before it boots.
rm -f /etc/ssh/ssh_host_*
# apt works from inside a node (the lab NATs the main bridge).
rm -f /etc/apt/sources.list
cat > /etc/apt/sources.list.d/debian.sources <<EOF
Types: deb
URIs: $LAB_MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $LAB_SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt-get -q update
apt-get clean
# Per-node files are written into each node's upper directory.
rm -f /etc/hostname /etc/hosts /etc/resolv.conf /etc/machine-id
cat > /usr/local/sbin/lab-init <<'EOF'
` + initScript + `EOF
chmod 0755 /usr/local/sbin/lab-init
`

func cacheDir() string {
	if d := os.Getenv("KBOOTSTRAP_LAB_CACHE"); d != "" {
		return d
	}
	return "/var/cache/kbootstrap-lab"
}

func mirrors() (mirror, security string) {
	mirror, security = os.Getenv("KBOOTSTRAP_LAB_MIRROR"), os.Getenv("KBOOTSTRAP_LAB_SECURITY_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	if security == "" {
		security = "http://deb.debian.org/debian-security"
	}
	return mirror, security
}

// RootfsName is the cache directory name of the rootfs: its suite and a short hash of the package
// list, the setup script, the mirrors and the build version.
func RootfsName() string { return minimalRootfs.name() }

// KubernetesRootfsName is the cache directory name of the rootfs of Kubernetes nodes.
func KubernetesRootfsName() string { return kubernetesRootfs.name() }

func (v rootfsVariant) name() string {
	mirror, security := mirrors()
	h := sha256.New()
	parts := []string{rootfsSuite, rootfsVersion, strings.Join(v.packages, ","), setupScript, mirror, security}
	if v.tag != "" {
		parts = append(parts, v.tag, v.setup)
	}
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	tag := ""
	if v.tag != "" {
		tag = v.tag + "-"
	}
	return "rootfs-" + rootfsSuite + "-" + tag + hex.EncodeToString(h.Sum(nil))[:12]
}

// ensureRootfs returns the cached rootfs, building it first if needed. Concurrent callers (in this
// or other processes) wait on a lock on the cache directory; only one builds. A build goes to a
// temporary directory that is renamed into place, so a killed build never leaves a partial rootfs.
func ensureRootfs(ctx context.Context, v rootfsVariant, log *logger) (string, error) {
	start := time.Now()
	dir := cacheDir()
	final := filepath.Join(dir, v.name())
	if isDir(final) {
		log.step(start, "rootfs %s cached", final)
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("lab: rootfs cache: %w", err)
	}
	unlock, err := flock(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("lab: rootfs cache: %w", err)
	}
	defer unlock()
	if isDir(final) { // built by someone else while we waited
		log.step(start, "rootfs %s cached (built by another process)", final)
		return final, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("lab: the rootfs %s must be built and debootstrap is not installed (apt-get install debootstrap): %w", final, err)
	}
	// Leftovers of killed builds: we hold the lock, so nobody is using them.
	if olds, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(olds) > 0 {
		for _, o := range olds {
			unmountUnder(o)
			if err := os.RemoveAll(o); err != nil {
				return "", fmt.Errorf("lab: remove partial rootfs: %w", err)
			}
		}
	}
	tmp := filepath.Join(dir, ".tmp-"+v.name())
	logFile := final + ".log"
	log.printf("building rootfs %s with debootstrap (a minute or two; log in %s)", final, logFile)
	if err := buildRootfs(ctx, v, tmp, logFile); err != nil {
		unmountUnder(tmp)
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("lab: rootfs: %w", err)
	}
	log.step(start, "rootfs %s built", final)
	return final, nil
}

func buildRootfs(ctx context.Context, v rootfsVariant, tmp, logFile string) error {
	mirror, security := mirrors()
	var logBuf strings.Builder
	defer func() { os.WriteFile(logFile, []byte(logBuf.String()), 0o644) }()
	// Run in private mount and PID namespaces: the mounts debootstrap and the setup make (proc,
	// sys) disappear with them, and if we are killed, unshare dies with us (run's Pdeathsig), its
	// child (PID 1 of the namespace) with it (--kill-child) and every other build process with that.
	ns := []string{"unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private", "--"}
	args := append(ns[:len(ns):len(ns)],
		"debootstrap", "--variant=minbase", "--include="+strings.Join(v.packages, ","),
		rootfsSuite, tmp, mirror)
	out, err := run(ctx, nil, args...)
	logBuf.Write(out)
	if err != nil {
		return fmt.Errorf("lab: debootstrap failed (log %s): %w", logFile, err)
	}
	setup := "export LAB_MIRROR='" + mirror + "' LAB_SECURITY_MIRROR='" + security + "'\n" + setupScript + v.setup
	args = append(ns[:len(ns):len(ns)], "sh", "-euc",
		`mount -t proc kblab-rootfs-proc "$1/proc"; cp /etc/resolv.conf "$1/etc/resolv.conf"; chroot "$1" /bin/sh -s`,
		"setup", tmp)
	out, err = run(ctx, strings.NewReader(setup), args...)
	logBuf.Write(out)
	if err != nil {
		return fmt.Errorf("lab: rootfs setup failed (log %s): %w", logFile, err)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
