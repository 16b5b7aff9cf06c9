package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

// ErrRuntimeBroken is returned when the node's container runtime cannot
// start any container while kubeadm waits for the control plane.
var ErrRuntimeBroken = errors.New("the container runtime cannot start containers")

// runtimeWatchInterval is how often the kubelet's journal is read while
// kubeadm runs; runtimeFailures how many runtime failures end the wait.
const (
	runtimeWatchInterval = 3 * time.Second
	runtimeFailures      = 3
)

// runtimeFailureMarkers are what the kubelet logs when the OCI runtime
// itself fails to create a container or sandbox (runc's "can't get final
// child's PID from pipe" where the bounding set lacks CAP_SYS_RESOURCE, a
// cgroup driver that does not match, a missing runc): no retry cures these.
var runtimeFailureMarkers = []string{"OCI runtime create failed", "runc create failed"}

// kubeadmWatched runs kubeadm on name as c.kubeadm does while watching the
// kubelet's journal there: when the runtime fails to create containers again
// and again, kubeadm (which would wait 4 minutes for a control plane that
// never comes) is stopped and the error carries the runtime's message.
func (c *run) kubeadmWatched(ctx context.Context, name, args string, opts ...node.ExecOption) (node.Result, error) {
	n := c.nodes[name]
	// The journal's times are the node's: read it from the node's now.
	since := time.Now().Add(-2 * time.Second)
	if f := c.facts[name]; f != nil {
		since = since.Add(f.ClockOffset)
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(runtimeWatchInterval)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			res, err := n.Run(wctx, kubeletJournalScript(since.Unix()), node.HideOutput())
			if err != nil {
				continue // the journal is a hint; kubeadm's own outcome stands
			}
			if count, msg := runtimeFailure(string(res.Stdout)); count >= runtimeFailures {
				cancel(fmt.Errorf("%w: %s (the kubelet's journal, %d times)", ErrRuntimeBroken, msg, count))
				return
			}
		}
	}()
	res, err := c.kubeadm(wctx, name, args, opts...)
	cancel(nil)
	<-done
	if cause := context.Cause(wctx); errors.Is(cause, ErrRuntimeBroken) {
		// The wait of kubeadm on the node is pointless: end it.
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		_, _ = n.Run(kctx, "pkill -x kubeadm || true", node.HideOutput())
		kcancel()
		return res, fmt.Errorf("node %s: kubeadm %s stopped: %w; fix containerd's configuration (/etc/containerd/config.toml: restrict_oom_score_adj, SystemdCgroup; playbook prepare-node sets both from the node's facts), then `kbootstrap reset --host %s` and run again", name, args, cause, name)
	}
	return res, err
}

// kubeletJournalScript prints the kubelet's journal lines since a Unix
// time that report a runtime failure.
func kubeletJournalScript(since int64) string {
	return "journalctl -u kubelet --since @" + strconv.FormatInt(since, 10) + " --no-pager -o cat 2>/dev/null | grep -F -e '" +
		strings.Join(runtimeFailureMarkers, "' -e '") + "' || true"
}

// runtimeFailure counts the runtime failures in the kubelet's journal lines
// and returns the runtime's own message of the last one.
func runtimeFailure(journal string) (int, string) {
	count, msg := 0, ""
	for _, line := range strings.Split(journal, "\n") {
		for _, m := range runtimeFailureMarkers {
			i := strings.Index(line, m)
			if i < 0 {
				continue
			}
			count++
			msg = quotedUntil(line[i:])
			break
		}
	}
	return count, msg
}

// quotedUntil is s up to the end of the klog value it starts inside (the
// first " not escaped), unescaped.
func quotedUntil(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case s[i] == '"':
			return strings.TrimSpace(b.String())
		default:
			b.WriteByte(s[i])
		}
	}
	return strings.TrimSpace(b.String())
}
