package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// systemdBootScript boots a Kubernetes node (Config.Kubernetes). It runs as PID 1 of the node's
// new PID namespace, in the node's network namespace and new mount, UTS, IPC and cgroup namespaces,
// after its launcher joined the node's cgroups (so the cgroup namespace's root is the node's
// cgroup). It mounts the node's root and what a VM has, pivots into it and execs systemd:
//
//   - /var/lib/{containerd,kubelet,etcd}: host directories (overlayfs refuses an overlay as the
//     upper directory of containerd's snapshots);
//   - /proc/sys read-only except /proc/sys/net (the node's own network namespace), with small files
//     mounted over the non-namespaced entries the kubelet sets (kernel.panic, ...), so that the
//     host's values never change;
//   - /sys read-only; /sys/fs/cgroup a tmpfs with every hierarchy of the host mounted as the host
//     mounts it (the node sees its own cgroup as the root);
//   - /dev a tmpfs with the usual devices and /dev/kmsg (the kubelet's OOM watcher reads it);
//   - /run and /tmp fresh tmpfs.
const systemdBootScript = `set -eu
log() { echo "lab-boot[$LAB_NODE]: $*"; }
hostname "$LAB_NODE"
mount --make-rprivate /
R=$LAB_ROOT
S=$LAB_SRC
mount -t overlay -o "lowerdir=$LAB_LOWER,upperdir=$LAB_UPPER,workdir=$LAB_WORK" "$S-root" "$R"
for d in $LAB_STATE_DIRS; do
	mkdir -p "$LAB_STATE/$d" "$R/var/lib/$d"
	mount --bind "$LAB_STATE/$d" "$R/var/lib/$d"
done
mount -t proc -o nosuid,nodev,noexec "$S-proc" "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount --bind "$R/proc/sys/net" "$R/proc/sys/net"
mount -o remount,bind,ro,nosuid,nodev,noexec "$R/proc/sys"
for s in $LAB_SHIELDS; do
	mount --bind "${s#*=}" "$R/proc/sys/${s%%=*}"
done
mount -t sysfs -o ro,nosuid,nodev,noexec "$S-sys" "$R/sys"
mount -t tmpfs -o nosuid,nodev,noexec,mode=0755 "$S-cgroup" "$R/sys/fs/cgroup"
for c in $LAB_CGROUPS; do
	type=${c%%:*}; rest=${c#*:}; opts=${rest%%:*}; dir=${rest#*:}
	mkdir -p "$R/sys/fs/cgroup/$dir"
	if [ -n "$opts" ]; then
		mount -t "$type" -o "nosuid,nodev,noexec,$opts" "$S-cg" "$R/sys/fs/cgroup/$dir"
	else
		mount -t "$type" -o nosuid,nodev,noexec "$S-cg" "$R/sys/fs/cgroup/$dir"
	fi
done
mount -t tmpfs -o nosuid,mode=0755,size=65536k "$S-dev" "$R/dev"
for d in null zero full random urandom tty kmsg; do
	: > "$R/dev/$d"
	mount --bind "/dev/$d" "$R/dev/$d"
done
: > "$R/dev/console"
mount --bind /dev/null "$R/dev/console"
mkdir -m 0755 "$R/dev/pts"
mkdir -m 1777 "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec "$S-devpts" "$R/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 "$S-shm" "$R/dev/shm"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=0755 "$S-run" "$R/run"
mount -t tmpfs -o nosuid,nodev,mode=1777 "$S-tmp" "$R/tmp"
if [ -n "${LAB_ARTIFACTS:-}" ]; then
	mkdir -p "$R/opt/kbootstrap/bin"
	mount --bind "$LAB_ARTIFACTS" "$R/opt/kbootstrap/bin"
	mount -o remount,bind,ro "$R/opt/kbootstrap/bin"
	log "$LAB_ARTIFACTS mounted read-only at /opt/kbootstrap/bin"
fi
if [ -n "${LAB_IMAGES:-}" ]; then
	mkdir -p "$R/opt/kbootstrap/images"
	mount --bind "$LAB_IMAGES" "$R/opt/kbootstrap/images"
	mount -o remount,bind,ro "$R/opt/kbootstrap/images"
	log "$LAB_IMAGES mounted read-only at /opt/kbootstrap/images"
fi
cd "$R"
mkdir -p .lab-oldroot
pivot_root . .lab-oldroot
cd /
umount -l /.lab-oldroot
rmdir /.lab-oldroot
log "root mounted, starting /lib/systemd/systemd"
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
	container=kbootstrap-lab ` + envID + `="$LAB_ID" KBOOTSTRAP_LAB_NODE="$LAB_NODE" /lib/systemd/systemd
`

// stateDirs are the directories of a Kubernetes node that live on the host (nodes/NAME/var/...),
// mounted at /var/lib/<dir>.
var stateDirs = []string{"containerd", "kubelet", "etcd"}

// ShieldedSysctls are the non-namespaced sysctls (paths under /proc/sys) the kubelet sets. On a
// Kubernetes node each is a small file of the node's, mounted over the /proc/sys entry and holding
// the host's value at first boot; the rest of /proc/sys outside /proc/sys/net is read-only.
var ShieldedSysctls = []string{
	"kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"vm/overcommit_memory", "vm/panic_on_oom",
}

// cgroupHierarchy is one cgroup hierarchy mounted on the host under /sys/fs/cgroup.
type cgroupHierarchy struct {
	Mount string // /sys/fs/cgroup/memory
	Type  string // cgroup (v1) or cgroup2
	Opts  string // v1: the controllers or name=..., comma-separated; v2: ""
	Self  string // this process's cgroup in it, "/process_api/..."
}

// cgroupHierarchies lists the host's cgroup hierarchies and this process's cgroup in each.
func cgroupHierarchies() ([]cgroupHierarchy, error) {
	self := map[string]string{} // sorted controllers (v1) or "" (v2) -> path
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		self[sortedOpts(f[1])] = f[2]
	}
	var out []cgroupHierarchy
	seen := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fs {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fs) || len(fs) < 5 {
			continue
		}
		typ, point, super := fs[sep+1], unescape(fs[4]), fs[sep+3]
		if (typ != "cgroup" && typ != "cgroup2") || !strings.HasPrefix(point, "/sys/fs/cgroup/") {
			continue
		}
		h := cgroupHierarchy{Mount: point, Type: typ}
		if typ == "cgroup" {
			var opts []string
			for _, o := range strings.Split(super, ",") {
				if o == "rw" || o == "ro" || o == "xattr" || o == "noprefix" || o == "clone_children" ||
					o == "cpuset_v2_mode" || strings.HasPrefix(o, "release_agent=") {
					continue
				}
				opts = append(opts, o)
			}
			h.Opts = strings.Join(opts, ",")
		}
		key := sortedOpts(h.Opts)
		if seen[key] {
			continue
		}
		p, ok := self[key]
		if !ok {
			continue
		}
		seen[key] = true
		h.Self = p
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, errors.New("no cgroup hierarchies mounted under /sys/fs/cgroup")
	}
	return out, nil
}

func sortedOpts(s string) string {
	if s == "" {
		return ""
	}
	p := strings.Split(s, ",")
	sort.Strings(p)
	return strings.Join(p, ",")
}

// cgroupName is the name of a node's cgroup in every hierarchy.
func cgroupName(id, node string) string { return "kblab-" + id + "-" + node }
func cgroupPrefix(id string) string     { return "kblab-" + id + "-" }

// ensureNodeCgroups creates the node's cgroup in every hierarchy, under the cgroup of the process
// that brings the node up (the first time; later boots reuse the recorded ones), and returns the
// LAB_CGROUPS value for the boot script.
func (l *Lab) ensureNodeCgroups(n *nodeState) (string, error) {
	hs, err := cgroupHierarchies()
	if err != nil {
		return "", err
	}
	if len(n.Cgroups) != len(hs) {
		n.Cgroups = nil
		for _, h := range hs {
			n.Cgroups = append(n.Cgroups, filepath.Join(h.Mount, h.Self, cgroupName(l.Config.ID, n.Name)))
		}
	}
	var spec []string
	for i, h := range hs {
		p := n.Cgroups[i]
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("cgroup %s: %w", p, err)
		}
		if strings.Contains(","+h.Opts+",", ",cpuset,") {
			// A new cpuset cgroup has no CPUs and no memory nodes: copy the parent's, and let
			// the node's own children (the kubelet's) inherit them.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(filepath.Dir(p), f))
				if err != nil {
					return "", err
				}
				if err := os.WriteFile(filepath.Join(p, f), v, 0o644); err != nil {
					return "", fmt.Errorf("cgroup %s: %s: %w", p, f, err)
				}
			}
			os.WriteFile(filepath.Join(p, "cgroup.clone_children"), []byte("1"), 0o644)
		}
		spec = append(spec, h.Type+":"+h.Opts+":"+filepath.Base(h.Mount))
	}
	return strings.Join(spec, " "), nil
}

// prepareKubernetesNode writes the node's sysctl shields and makes its state directories.
func (l *Lab) prepareKubernetesNode(n *nodeState) (shields string, err error) {
	dir := l.nodeDir(n.Name)
	for _, d := range stateDirs {
		// etcd's data directory is 0700, as kubeadm makes it (etcd audit's
		// cis-1.1.11); the others as the packages make them.
		mode := os.FileMode(0o755)
		if d == "etcd" {
			mode = 0o700
		}
		p := filepath.Join(dir, "var", d)
		if err := os.MkdirAll(p, mode); err != nil {
			return "", err
		}
		if err := os.Chmod(p, mode); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "sysctl"), 0o755); err != nil {
		return "", err
	}
	var out []string
	for _, key := range ShieldedSysctls {
		f := filepath.Join(dir, "sysctl", strings.ReplaceAll(key, "/", "."))
		if _, err := os.Stat(f); err != nil {
			v, err := os.ReadFile(filepath.Join("/proc/sys", key))
			if err != nil {
				continue // not in this kernel
			}
			if err := os.WriteFile(f, v, 0o644); err != nil {
				return "", err
			}
		}
		out = append(out, key+"="+f)
	}
	return strings.Join(out, " "), nil
}

// cgroupJoinScript runs its arguments after moving itself into the given cgroups.
const cgroupJoinScript = `for f in $LAB_JOIN_CGROUPS; do echo $$ > "$f/cgroup.procs"; done; exec "$@"`

// labCgroups lists the lab's node cgroups (by name) in every hierarchy of the host, however deep.
func labCgroups(id string) []string {
	var out []string
	hs, err := cgroupHierarchies()
	if err != nil {
		return nil
	}
	prefix := cgroupPrefix(id)
	for _, h := range hs {
		var walk func(dir string, depth int)
		walk = func(dir string, depth int) {
			ents, err := os.ReadDir(dir)
			if err != nil {
				return
			}
			for _, e := range ents {
				if !e.IsDir() {
					continue
				}
				p := filepath.Join(dir, e.Name())
				if strings.HasPrefix(e.Name(), prefix) {
					out = append(out, p)
					continue
				}
				if depth < 6 {
					walk(p, depth+1)
				}
			}
		}
		walk(h.Mount, 0)
	}
	sort.Strings(out)
	return out
}

// cgroupPIDs lists the processes in a cgroup and its descendants.
func cgroupPIDs(root string) []int {
	var pids []int
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroup removes a cgroup and its descendants, deepest first, retrying while processes that
// are exiting still hold them.
func removeCgroup(ctx context.Context, root string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var last error
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		var dirs []string
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		if len(dirs) == 0 {
			return true, nil
		}
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		last = nil
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("rmdir %s: %w", d, err)
			}
		}
		_, err := os.Stat(root)
		return errors.Is(err, fs.ErrNotExist), nil
	})
	if err != nil {
		return fmt.Errorf("cgroup %s: %w (%v)", root, err, last)
	}
	return nil
}

// RoutePodCIDRs adds, in every node's network namespace, a route to each other node's pod CIDR
// through that node's first address (cidrs maps node names to CIDRs such as 10.244.1.0/24), as a
// host-gw network plugin would. Routes already there are replaced; nodes without a CIDR only get
// routes.
func (l *Lab) RoutePodCIDRs(ctx context.Context, cidrs map[string]string) error {
	l.mu.Lock()
	nodes := append([]*nodeState(nil), l.nodes...)
	l.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		var b strings.Builder
		for _, m := range nodes {
			cidr, ok := cidrs[m.Name]
			if !ok || m.Name == n.Name {
				continue
			}
			fmt.Fprintf(&b, "route replace %s via %s\n", cidr, m.Addresses[0])
		}
		if b.Len() == 0 {
			continue
		}
		if _, err := run(ctx, strings.NewReader(b.String()), "ip", "-n", netnsName(l.Config.ID, n.Name), "-batch", "-"); err != nil {
			errs = append(errs, fmt.Errorf("lab: node %s: routes: %w", n.Name, err))
		}
	}
	if len(errs) == 0 {
		l.log.printf("pod CIDR routes: %v", cidrs)
	}
	return errors.Join(errs...)
}
