package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// labBridgeRE matches the bridges of any lab.
var labBridgeRE = regexp.MustCompile(`^kb[a-z0-9]{1,5}[01]$`)

// Down removes everything the lab with this ID made: its processes, mounts, network namespaces,
// links, bridges and iptables rules, and in dir its state, keys, known_hosts, inventory and node
// directories (dir/artifacts and the cached rootfs stay). It finds them by name, so it also cleans
// up after a kill -9 of the process that ran Up or a crashed test, when the state file is missing
// or partial. dir may be "" when unknown (then no files are removed); id may be "" to take it from
// dir's state. It returns an error listing whatever could not be removed.
func Down(ctx context.Context, dir, id string) error {
	return down(ctx, dir, id, &logger{w: discard{}})
}

// Down removes everything of the lab: see the package-level Down.
func (l *Lab) Down(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.syncLog()
	err := down(ctx, l.Config.Dir, l.Config.ID, l.log)
	for _, n := range l.nodes {
		n.HostPID, n.LauncherPID = 0, 0
	}
	l.refresh()
	return err
}

func down(ctx context.Context, dir, id string, log *logger) error {
	start := time.Now()
	if dir != "" {
		var err error
		if dir, err = filepath.Abs(dir); err != nil {
			return err
		}
		if b, err := os.ReadFile(filepath.Join(dir, stateFile)); err == nil {
			var st state
			if json.Unmarshal(b, &st) == nil && st.Config.ID != "" {
				if id == "" {
					id = st.Config.ID
				} else if id != st.Config.ID {
					return fmt.Errorf("lab: %s holds lab %q, not %q", dir, st.Config.ID, id)
				}
			}
		}
	}
	if id == "" {
		id = DefaultID
	}
	if !idRE.MatchString(id) {
		return fmt.Errorf("lab: bad ID %q", id)
	}
	if os.Geteuid() != 0 {
		return errors.New("lab: Down needs root")
	}
	if isDir(dir) {
		unlock, err := flock(ctx, filepath.Join(dir, ".lock"))
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		defer unlock()
	}

	var errs []error
	t := time.Now()
	if err := killLab(ctx, id); err != nil {
		errs = append(errs, err)
	}
	log.step(t, "processes of lab %s killed", id)

	t = time.Now()
	for _, cg := range labCgroups(id) {
		errs = append(errs, removeCgroup(ctx, cg))
	}
	errs = append(errs, unmountLab(id, dir)...)
	for _, ns := range labNetns(id) {
		if _, err := run(ctx, nil, "ip", "netns", "del", ns); err != nil {
			p := "/run/netns/" + ns
			if uerr := syscall.Unmount(p, syscall.MNT_DETACH); uerr != nil && !errors.Is(uerr, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("umount %s: %w", p, uerr))
			}
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("%w (and rm %s: %v)", err, p, rerr))
			}
		}
	}
	links, err := labLinks(ctx, id)
	errs = append(errs, err)
	for _, l := range links {
		if _, err := run(ctx, nil, "ip", "link", "del", l); err != nil && linkExists(l) {
			errs = append(errs, err)
		}
	}
	rules, err := labRules(ctx, id)
	errs = append(errs, err)
	for _, r := range rules {
		args := append([]string{"iptables", "-w", "-t", r[0], "-D"}, r[2:]...)
		if _, err := run(ctx, nil, args...); err != nil {
			errs = append(errs, err)
		}
	}
	if unlock, err := globalLock(ctx); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, restoreIPForward(ctx))
		unlock()
	}
	log.step(t, "network of lab %s removed", id)

	if dir != "" {
		t = time.Now()
		errs = append(errs, removeFiles(dir))
		log.step(t, "files of lab %s in %s removed", id, dir)
	}
	left, err := Leftovers(ctx, dir, id)
	errs = append(errs, err)
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("lab %s: left after down: %s", id, strings.Join(left, "; ")))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.step(start, "lab %s down", id)
	return nil
}

// removeFiles removes what the lab wrote in dir, keeping dir/artifacts (and dir itself when
// something else is in it).
func removeFiles(dir string) error {
	var errs []error
	for _, f := range []string{"nodes", "id_ed25519", "id_ed25519.pub", "known_hosts", "kbootstrap.yaml", stateFile} {
		p := filepath.Join(dir, f)
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
		os.Remove(p + ".tmp")
	}
	os.Remove(filepath.Join(dir, ".lock"))
	os.Remove(dir) // only if empty
	return errors.Join(errs...)
}

// labNetns lists the lab's named network namespaces.
func labNetns(id string) []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), netnsPrefix(id)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// labPIDs lists the processes of the lab: those in its network namespaces and those carrying its
// ID in their environment (the init of a node whose namespace file is gone).
func labPIDs(id string) []int { return labPIDsIn(id, labCgroups(id)) }

// labPIDsIn is labPIDs with the lab's cgroups already listed.
func labPIDsIn(id string, cgroups []string) []int {
	inos := map[uint64]bool{}
	for _, ns := range labNetns(id) {
		if ino := netnsInode(ns); ino != 0 {
			inos[ino] = true
		}
	}
	marker := []byte(envID + "=" + id)
	self := os.Getpid()
	var pids []int
	inCgroup := map[int]bool{}
	for _, cg := range cgroups {
		for _, p := range cgroupPIDs(cg) {
			inCgroup[p] = true
		}
	}
	for _, pid := range allPIDs() {
		if pid == self {
			continue
		}
		if inCgroup[pid] {
			pids = append(pids, pid)
			continue
		}
		if inos[pidNetns(pid)] {
			pids = append(pids, pid)
			continue
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, marker) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// killLab SIGKILLs every process of the lab until none is left.
func killLab(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last []int
	var killed procSet
	cgroups := labCgroups(id) // no new ones appear while the lab's processes die
	err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		last = labPIDsIn(id, cgroups)
		for _, p := range last {
			killed.kill(p)
		}
		return len(last) == 0 && killed.exited(), nil
	})
	if err != nil {
		return fmt.Errorf("lab %s: processes still running: %v: %w", id, last, err)
	}
	return nil
}

type mountEntry struct{ point, source, fstype string }

func readMounts() []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fs := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fs {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fs) < 5 || sep < 0 || sep+2 >= len(fs) {
			continue
		}
		out = append(out, mountEntry{point: unescape(fs[4]), fstype: fs[sep+1], source: unescape(fs[sep+2])})
	}
	return out
}

// unescape undoes the octal escapes (\040) of /proc/self/mountinfo.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// labMounts lists the host mounts that belong to the lab, deepest first.
func labMounts(id, dir string) []string {
	var out []string
	for _, m := range readMounts() {
		if strings.HasPrefix(m.source, mountPrefix(id)) ||
			strings.HasPrefix(m.point, "/run/netns/"+netnsPrefix(id)) && m.fstype != "nsfs" ||
			dir != "" && strings.HasPrefix(m.point, filepath.Join(dir, "nodes")+"/") {
			out = append(out, m.point)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unmountLab unmounts the lab's host mounts (there are none unless something went wrong: nodes
// mount inside their own mount namespace), lazily when busy.
func unmountLab(id, dir string) []error {
	var errs []error
	for _, p := range labMounts(id, dir) {
		if err := unmount(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func unmount(p string) error {
	err := syscall.Unmount(p, 0)
	if err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("umount -l %s: %w", p, err)
	}
	return nil
}

// unmountUnder unmounts everything mounted under dir, deepest first.
func unmountUnder(dir string) {
	var ps []string
	for _, m := range readMounts() {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			ps = append(ps, m.point)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return len(ps[i]) > len(ps[j]) })
	for _, p := range ps {
		unmount(p)
	}
}

// labLinks lists the host links of the lab: its bridges and the host ends of its veths.
func labLinks(ctx context.Context, id string) ([]string, error) {
	links, err := hostLinks(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if l.Name == bridgeName(id, 0) || l.Name == bridgeName(id, 1) || strings.HasPrefix(l.Name, vethPrefix(id)) {
			out = append(out, l.Name)
		}
	}
	return out, nil
}

// labRules lists the lab's iptables rules as {table, "-A", chain, spec...}.
func labRules(ctx context.Context, id string) ([][]string, error) {
	c := ruleComment(id)
	var out [][]string
	for _, table := range []string{"nat", "filter"} {
		b, err := run(ctx, nil, "iptables", "-w", "-t", table, "-S")
		if err != nil {
			return out, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "-A" {
				continue
			}
			for i := 0; i+1 < len(f); i++ {
				if f[i] == "--comment" && strings.Trim(f[i+1], `"`) == c {
					out = append(out, append([]string{table}, f...))
					break
				}
			}
		}
	}
	return out, nil
}

// Leftovers lists what the lab with this ID still has on this machine (processes, mounts,
// network namespaces, links, iptables rules, and files in dir when dir is not ""). Down uses it to
// check its work; tests use it to prove a clean Down.
func Leftovers(ctx context.Context, dir, id string) ([]string, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("lab: bad ID %q", id)
	}
	var left []string
	for _, p := range labPIDs(id) {
		cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
		left = append(left, fmt.Sprintf("process %d (%s)", p, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))))
	}
	if dir != "" {
		dir, _ = filepath.Abs(dir)
	}
	for _, m := range labMounts(id, dir) {
		left = append(left, "mount "+m)
	}
	for _, m := range readMounts() {
		if strings.HasPrefix(m.point, "/run/netns/"+netnsPrefix(id)) && m.fstype == "nsfs" {
			left = append(left, "mount "+m.point)
		}
	}
	for _, ns := range labNetns(id) {
		left = append(left, "netns "+ns)
	}
	for _, cg := range labCgroups(id) {
		left = append(left, "cgroup "+cg)
	}
	links, err := labLinks(ctx, id)
	for _, l := range links {
		left = append(left, "link "+l)
	}
	rules, rerr := labRules(ctx, id)
	for _, r := range rules {
		left = append(left, "iptables -t "+r[0]+" "+strings.Join(r[1:], " "))
	}
	if dir != "" {
		for _, f := range []string{"nodes", "id_ed25519", "id_ed25519.pub", "known_hosts", "kbootstrap.yaml", stateFile} {
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				left = append(left, "file "+filepath.Join(dir, f))
			}
		}
	}
	return left, errors.Join(err, rerr)
}
