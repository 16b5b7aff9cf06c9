package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bootScript runs on the host's filesystem as PID 1 of the node's new PID namespace, inside the
// node's new mount, UTS and IPC namespaces and its network namespace. It mounts the node's root
// (in the node's own mount namespace, so nothing is left on the host when the node dies), pivots
// into it and execs tini. Its output goes to the node's console.log.
const bootScript = `set -eu
log() { echo "lab-boot[$LAB_NODE]: $*"; }
hostname "$LAB_NODE"
mount --make-rprivate /
R=$LAB_ROOT
S=$LAB_SRC
mount -t overlay -o "lowerdir=$LAB_LOWER,upperdir=$LAB_UPPER,workdir=$LAB_WORK" "$S-root" "$R"
mount -t proc -o nosuid,nodev,noexec "$S-proc" "$R/proc"
mount -t sysfs -o nosuid,nodev,noexec "$S-sys" "$R/sys"
mount -t tmpfs -o nosuid,mode=0755,size=65536k "$S-dev" "$R/dev"
for d in null zero full random urandom tty; do
	: > "$R/dev/$d"
	mount --bind "/dev/$d" "$R/dev/$d"
done
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
cd "$R"
mkdir -p .lab-oldroot
pivot_root . .lab-oldroot
cd /
umount -l /.lab-oldroot
rmdir /.lab-oldroot
log "root mounted, starting /usr/bin/tini -- /usr/local/sbin/lab-init"
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
	` + envID + `="$LAB_ID" KBOOTSTRAP_LAB_NODE="$LAB_NODE" /usr/bin/tini -- /usr/local/sbin/lab-init
`

// nodeState is what state.json records about a node.
type nodeState struct {
	Name        string
	Role        string
	Index       int      // 1, 2, ...: host number 10+Index in each subnet; names the veths
	Networks    []int    // as in NodeSpec
	Addresses   []string // one per network
	HostPID     int      // tini, PID 1 of the node; 0 when stopped
	LauncherPID int      // unshare, the parent of HostPID on the host
	Partitioned bool
	// Cgroups are the node's cgroups on the host, one per hierarchy (Kubernetes nodes only).
	Cgroups []string `json:",omitempty"`
}

func (l *Lab) nodeDir(name string) string { return filepath.Join(l.Config.Dir, "nodes", name) }

// netnsInode returns the inode of the lab node's named network namespace, or 0.
func netnsInode(ns string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &st); err != nil {
		return 0
	}
	return st.Ino
}

// pidNetns returns the inode of the network namespace of a process, or 0 (gone, zombie).
func pidNetns(pid int) uint64 {
	s, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return 0
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "net:["), "]")
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// alive reports whether the node's PID 1 is running (and is really in the node's namespace).
func (l *Lab) alive(n *nodeState) bool {
	if n.HostPID <= 0 {
		return false
	}
	ino := netnsInode(netnsName(l.Config.ID, n.Name))
	return ino != 0 && pidNetns(n.HostPID) == ino
}

// prepareNode writes what the node needs into its upper directory before it boots: its host key,
// the lab's client key for root and vagrant, and (the first time) hostname, hosts, resolv.conf and
// machine-id. The node must not be running.
func (l *Lab) prepareNode(ctx context.Context, n *nodeState, hosts string) error {
	dir := l.nodeDir(n.Name)
	upper := filepath.Join(dir, "upper")
	for _, d := range []string{upper, filepath.Join(dir, "work"), filepath.Join(dir, "root")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	key := filepath.Join(dir, "ssh_host_ed25519_key")
	if _, err := os.Stat(key + ".pub"); err != nil {
		os.Remove(key)
		if _, err := run(ctx, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@"+n.Name, "-f", key); err != nil {
			return fmt.Errorf("lab: node %s: host key: %w", n.Name, err)
		}
	}
	u := upperFS{lower: l.rootfs, upper: upper}
	priv, err := os.ReadFile(key)
	if err != nil {
		return err
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return err
	}
	if err := u.write("etc/ssh/ssh_host_ed25519_key", priv, 0o600, 0, 0); err != nil {
		return err
	}
	if err := u.write("etc/ssh/ssh_host_ed25519_key.pub", pub, 0o644, 0, 0); err != nil {
		return err
	}
	client, err := os.ReadFile(l.KeyFile + ".pub")
	if err != nil {
		return err
	}
	if err := u.addLine("root/.ssh/authorized_keys", client, 0, 0); err != nil {
		return err
	}
	if err := u.addLine("home/vagrant/.ssh/authorized_keys", client, 1000, 1000); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(upper, "etc/hostname")); err == nil {
		return nil // not the first boot: the node's disk keeps what it has
	}
	if err := u.write("etc/hosts", []byte(hosts), 0o644, 0, 0); err != nil {
		return err
	}
	if err := u.write("etc/resolv.conf", resolvConf(), 0o644, 0, 0); err != nil {
		return err
	}
	id := make([]byte, 16)
	rand.Read(id)
	if err := u.write("etc/machine-id", []byte(hex.EncodeToString(id)+"\n"), 0o444, 0, 0); err != nil {
		return err
	}
	return u.write("etc/hostname", []byte(n.Name+"\n"), 0o644, 0, 0)
}

// resolvConf returns the host's resolver configuration for the nodes (their traffic is NATed out
// of the host, so the host's name servers work unless they are on loopback).
func resolvConf() []byte {
	for _, p := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if loopbackOnly(b) {
			continue
		}
		return b
	}
	b, _ := os.ReadFile("/etc/resolv.conf")
	return b
}

func loopbackOnly(resolv []byte) bool {
	sc := bufio.NewScanner(strings.NewReader(string(resolv)))
	n := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip := net.ParseIP(f[1]); ip != nil && !ip.IsLoopback() {
				return false
			}
			n++
		}
	}
	return n > 0
}

// upperFS writes files into an overlay upper directory. Directories it creates on the way take
// the mode and owner of the same directory in the lower one (an upper directory's attributes hide
// the lower's).
type upperFS struct{ lower, upper string }

func (u upperFS) mkdirAll(rel string, uid, gid int) error {
	parts := strings.Split(filepath.Clean(rel), "/")
	for i := range parts {
		r := filepath.Join(parts[:i+1]...)
		p := filepath.Join(u.upper, r)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		mode, du, dg := os.FileMode(0o700), uid, gid
		if fi, err := os.Stat(filepath.Join(u.lower, r)); err == nil {
			st := fi.Sys().(*syscall.Stat_t)
			mode, du, dg = fi.Mode().Perm()|fi.Mode()&os.ModeSticky, int(st.Uid), int(st.Gid)
		}
		if err := os.Mkdir(p, mode); err != nil {
			return err
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
		if err := os.Lchown(p, du, dg); err != nil {
			return err
		}
	}
	return nil
}

func (u upperFS) write(rel string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := u.mkdirAll(filepath.Dir(rel), uid, gid); err != nil {
		return err
	}
	p := filepath.Join(u.upper, rel)
	if err := writeFile(p, data, mode); err != nil {
		return err
	}
	return os.Lchown(p, uid, gid)
}

// addLine makes sure the file holds line (authorized_keys that a test may have extended).
func (u upperFS) addLine(rel string, line []byte, uid, gid int) error {
	cur, _ := os.ReadFile(filepath.Join(u.upper, rel))
	want := strings.TrimSpace(string(line))
	for _, l := range strings.Split(string(cur), "\n") {
		if strings.TrimSpace(l) == want {
			return nil
		}
	}
	if len(cur) > 0 && cur[len(cur)-1] != '\n' {
		cur = append(cur, '\n')
	}
	return u.write(rel, append(cur, want+"\n"...), 0o600, uid, gid)
}

// launch boots the node: nsenter into its network namespace, unshare the other namespaces and run
// the boot script. The processes are in a session of their own and do not depend on the caller
// (a test binary, the lab command) staying alive.
func (l *Lab) launch(ctx context.Context, n *nodeState) error {
	dir := l.nodeDir(n.Name)
	boot := filepath.Join(dir, "boot.sh")
	script := bootScript
	var kenv []string
	if l.Config.Kubernetes {
		script = systemdBootScript
		cgroups, err := l.ensureNodeCgroups(n)
		if err != nil {
			return fmt.Errorf("lab: node %s: %w", n.Name, err)
		}
		shields, err := l.prepareKubernetesNode(n)
		if err != nil {
			return fmt.Errorf("lab: node %s: %w", n.Name, err)
		}
		kenv = []string{"LAB_CGROUPS=" + cgroups, "LAB_SHIELDS=" + shields,
			"LAB_STATE=" + filepath.Join(dir, "var"), "LAB_STATE_DIRS=" + strings.Join(stateDirs, " "),
			"LAB_JOIN_CGROUPS=" + strings.Join(n.Cgroups, " "), "LAB_IMAGES=" + l.images()}
	}
	if err := writeFile(boot, []byte(script), 0o755); err != nil {
		return err
	}
	consolePath := filepath.Join(dir, "console.log")
	console, err := os.OpenFile(consolePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer console.Close()
	fmt.Fprintf(console, "lab: %s booting %s (%s)\n", time.Now().UTC().Format(time.RFC3339), n.Name, strings.Join(n.Addresses, ", "))
	ns := netnsName(l.Config.ID, n.Name)
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, "--",
		"unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--propagation", "private",
		"--", "/bin/sh", boot)
	if l.Config.Kubernetes {
		// Join the node's cgroups first: the cgroup namespace then has the node's cgroup as its root.
		cmd = exec.Command("/bin/sh", "-c", cgroupJoinScript, "lab-launch", "nsenter", "--net=/run/netns/"+ns, "--",
			"unshare", "--cgroup", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--propagation", "private",
			"--", "/bin/sh", boot)
	}
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		envID + "=" + l.Config.ID,
		"LAB_ID=" + l.Config.ID,
		"LAB_NODE=" + n.Name,
		"LAB_ROOT=" + filepath.Join(dir, "root"),
		"LAB_LOWER=" + l.rootfs,
		"LAB_UPPER=" + filepath.Join(dir, "upper"),
		"LAB_WORK=" + filepath.Join(dir, "work"),
		"LAB_SRC=" + mountSource(l.Config.ID, n.Name),
		"LAB_ARTIFACTS=" + l.artifacts,
	}
	cmd.Env = append(cmd.Env, kenv...)
	cmd.Stdout, cmd.Stderr = console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: node %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // reap it if it dies while we live
	n.LauncherPID, n.HostPID = cmd.Process.Pid, 0
	children := fmt.Sprintf("/proc/%d/task/%d/children", n.LauncherPID, n.LauncherPID)
	err = poll(ctx, 2*time.Millisecond, func() (bool, error) {
		select {
		case <-exited:
			return false, fmt.Errorf("lab: node %s did not boot: %s", n.Name, tail(consolePath, 15))
		default:
		}
		b, _ := os.ReadFile(children)
		if f := strings.Fields(string(b)); len(f) > 0 {
			n.HostPID, _ = strconv.Atoi(f[0])
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		syscall.Kill(n.LauncherPID, syscall.SIGKILL)
		return err
	}
	return nil
}

// listening reports whether a socket in the process's network namespace listens on TCP port.
func listening(pid, port int) bool {
	want := fmt.Sprintf(":%04X ", port)
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 3 && strings.HasSuffix(fs[1]+" ", want) && fs[3] == "0A" {
				return true
			}
		}
	}
	return false
}

// waitSSH waits until the node's sshd listens on :22 and, when the host can reach the node (main
// bridge, not partitioned), accepts a TCP connection from the host.
func (l *Lab) waitSSH(ctx context.Context, n *nodeState) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	console := filepath.Join(l.nodeDir(n.Name), "console.log")
	err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		if !l.alive(n) {
			return false, fmt.Errorf("lab: node %s died while booting; console:\n%s", n.Name, tail(console, 15))
		}
		if !listening(n.HostPID, 22) {
			return false, nil
		}
		if n.Partitioned || n.Networks[0] != 0 {
			return true, nil
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(n.Addresses[0], "22"), time.Second)
		if err != nil {
			return false, nil
		}
		defer c.Close()
		// sshd's banner, "SSH-2.0-OpenSSH_...": it accepts and serves connections.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		banner := make([]byte, 4)
		_, err = io.ReadFull(c, banner)
		return err == nil && string(banner) == "SSH-", nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("lab: node %s: sshd does not accept connections on %s:22; console:\n%s", n.Name, n.Addresses[0], tail(console, 15))
	}
	return err
}

// netnsPIDs lists the processes (not zombies) whose network namespace is the named one.
func netnsPIDs(ns string) []int {
	ino := netnsInode(ns)
	if ino == 0 {
		return nil
	}
	var pids []int
	for _, pid := range allPIDs() {
		if pidNetns(pid) == ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// kill SIGKILLs the node's processes (PID 1 first: the kernel then kills the rest of its PID
// namespace) and waits until they have exited, so that its mount namespace, and with it the
// overlay on its upper directory, is gone.
func (l *Lab) kill(ctx context.Context, n *nodeState) error {
	ns := netnsName(l.Config.ID, n.Name)
	var killed procSet
	if l.alive(n) {
		killed.kill(n.HostPID)
	}
	if n.LauncherPID > 0 && pidNetns(n.LauncherPID) == netnsInode(ns) {
		killed.kill(n.LauncherPID)
	}
	err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
		pids := netnsPIDs(ns)
		// Pods of a Kubernetes node are in network namespaces of their own, but in its cgroups.
		for _, cg := range n.Cgroups {
			pids = append(pids, cgroupPIDs(cg)...)
		}
		for _, p := range pids {
			killed.kill(p)
		}
		return len(pids) == 0 && killed.exited(), nil
	})
	if err != nil {
		return fmt.Errorf("lab: node %s: processes left in %s: %w", n.Name, ns, err)
	}
	n.HostPID, n.LauncherPID = 0, 0
	return nil
}

// procSet remembers processes it killed (by PID and start time, against PID reuse).
type procSet map[int]string

func (s *procSet) kill(pid int) {
	if *s == nil {
		*s = procSet{}
	}
	if _, ok := (*s)[pid]; !ok {
		(*s)[pid] = procStart(pid)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// exited reports whether every killed process has exited (is gone or a zombie). A process that
// is still exiting has already left its namespaces but may still hold its mounts.
func (s procSet) exited() bool {
	for pid, start := range s {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		f := statFields(string(b))
		if len(f) < 20 || f[19] != start || f[0] == "Z" || f[0] == "X" {
			continue
		}
		return false
	}
	return true
}

// statFields returns the fields of /proc/PID/stat after the command name: state is [0], the
// start time [19].
func statFields(stat string) []string {
	i := strings.LastIndex(stat, ")")
	if i < 0 {
		return nil
	}
	return strings.Fields(stat[i+1:])
}

func procStart(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if f := statFields(string(b)); len(f) >= 20 {
		return f[19]
	}
	return ""
}
