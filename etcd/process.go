package etcd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/kbootstrap/kbootstrap/node"
)

// The static pod manifests kubeadm writes.
const (
	apiServerProcess   = "kube-apiserver"
	etcdProcess        = "etcd"
	apiServerContainer = "kube-apiserver"
	etcdContainer      = "etcd"
)

// Process is a running program found on a node.
type Process struct {
	PID  int
	Argv []string
	Env  map[string]string // only when asked for (etcd reads ETCD_* variables)
}

// findPIDsScript lists the PIDs whose /proc/PID/comm is exactly the name
// given as $1, without forking per process (no pgrep needed: Debian's
// minbase has no procps).
const findPIDsScript = `for d in /proc/[0-9]*; do { read -r c < "$d/comm"; } 2>/dev/null || continue; [ "$c" = "$1" ] && echo "${d#/proc/}"; done; true`

// FindProcess returns the process called name (its comm, as `ps -e` shows it)
// running on n, or nil when none runs. When several run, the one with the
// lowest PID that still has a command line is returned. n should be
// privileged (node.Sudo) to read root's processes everywhere.
func FindProcess(ctx context.Context, n node.Node, name string, withEnv bool) (*Process, error) {
	res, err := n.Run(ctx, "sh -c "+node.ShellQuote(findPIDsScript)+" sh "+node.ShellQuote(name))
	if err != nil {
		return nil, fmt.Errorf("node %s: list processes: %w", n.Name(), err)
	}
	var pids []int
	for _, f := range strings.Fields(string(res.Stdout)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		b, err := n.ReadFile(ctx, fmt.Sprintf("/proc/%d/cmdline", pid))
		if errors.Is(err, fs.ErrNotExist) {
			continue // exited meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: read /proc/%d/cmdline: %w", n.Name(), pid, err)
		}
		argv := SplitCmdline(b)
		if len(argv) == 0 {
			continue // zombie or kernel thread
		}
		p := &Process{PID: pid, Argv: argv}
		if withEnv {
			if b, err := n.ReadFile(ctx, fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
				p.Env = SplitEnviron(b)
			}
		}
		return p, nil
	}
	return nil, nil
}

// readManifest reads a static pod manifest; a missing file is (nil, nil).
func readManifest(ctx context.Context, n node.Node, path, container string) ([]string, map[string]string, error) {
	b, err := n.ReadFile(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: read %s: %w", n.Name(), path, err)
	}
	argv, env, err := ManifestCommand(b, container)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: %s: %w", n.Name(), path, err)
	}
	return argv, env, nil
}
