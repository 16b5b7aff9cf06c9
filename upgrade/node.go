package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/kbootstrap/kbootstrap/apidrain"
	"github.com/kbootstrap/kbootstrap/etcd"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// nodeTimeout bounds one node's upgrade once started: it runs to its end
// (or its rollback) even when the run is interrupted, so no node is left
// half-upgraded.
const nodeTimeout = 30 * time.Minute

// apply upgrades the control planes one at a time, then the workers in
// batches of MaxUnavailable; it stops at the first node that fails (put
// back) or at an interrupt, between two nodes.
func (r *run) apply(ctx context.Context, todo []*target) error {
	var cps, workers []*target
	for _, t := range todo {
		if t.cp {
			cps = append(cps, t)
		} else {
			workers = append(workers, t)
		}
	}
	left := func(from []*target) error {
		var names []string
		for _, t := range from {
			names = append(names, t.in.Name)
		}
		return fmt.Errorf("%w (%w): %s not upgraded yet; run the upgrade again to finish", ErrInterrupted, ctx.Err(), strings.Join(names, ", "))
	}
	for i, t := range cps {
		if ctx.Err() != nil {
			return left(append(cps[i:], workers...))
		}
		err := r.upgradeNode(ctx, t)
		r.record(t)
		if err != nil {
			return err
		}
	}
	for i := 0; i < len(workers); i += r.o.MaxUnavailable {
		if ctx.Err() != nil {
			return left(workers[i:])
		}
		batch := workers[i:min(i+r.o.MaxUnavailable, len(workers))]
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for j, t := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[j] = r.upgradeNode(ctx, t)
			}()
		}
		wg.Wait()
		for _, t := range batch {
			r.record(t)
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	r.cleanKubeadmBackups(ctx, todo)
	return nil
}

func (r *run) record(t *target) {
	for i := range r.res.Nodes {
		if r.res.Nodes[i].Node == t.in.Name {
			r.res.Nodes[i] = *t.res
		}
	}
}

// nodeRun is one node's upgrade.
type nodeRun struct {
	r       *run
	t       *target
	bin     string // where the node's kubeadm, kubelet and kubectl are
	apply   bool   // kubeadm upgrade apply (else node)
	drained func(context.Context) error
	// heartbeat is the Node's Ready heartbeat before the kubelet's
	// restart: Ready counts once a newer one is posted.
	heartbeat time.Time
}

// backupDir holds what ran on a node before the upgrade to v.
func backupDir(v string) string { return NodeDir + "/before-" + v }

// upgradeNode runs a node's steps; a failure after the first change puts
// the node back from its backup and ends with an error naming the node.
func (r *run) upgradeNode(ctx context.Context, t *target) error {
	start := time.Now()
	// Not cancelled by an interrupt: a node is upgraded or put back whole.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), nodeTimeout)
	defer cancel()
	nr := &nodeRun{r: r, t: t, apply: t.cp && r.clusterVersion != r.res.To}
	t.res.Action = "node"
	if nr.apply {
		t.res.Action = "apply"
	}
	steps := []struct {
		name     string
		run      func(context.Context) error
		rollback bool
	}{
		{"backup", nr.backup, false},
		{"drain", nr.drain, true},
		{"kubeadm", nr.kubeadm, true},
		{"kubelet", nr.kubelet, true},
		{"ready", nr.ready, true},
		{"uncordon", nr.uncordon, true},
	}
	for _, s := range steps {
		if ctx.Err() != nil && s.name == "backup" {
			return fmt.Errorf("%w (%w) before %s", ErrInterrupted, ctx.Err(), t.in.Name)
		}
		s0 := time.Now()
		err := s.run(nctx)
		t.res.Steps = append(t.res.Steps, Step{Name: s.name, Seconds: time.Since(s0).Seconds()})
		if err == nil {
			continue
		}
		t.res.Seconds = time.Since(start).Seconds()
		if !s.rollback {
			return fmt.Errorf("node %s: %s: %w", t.in.Name, s.name, err)
		}
		rerr := nr.rollback(nctx)
		t.res.Action = "rolled back"
		if rerr != nil {
			return fmt.Errorf("node %s: %s: %w; putting it back failed too: %w", t.in.Name, s.name, err, rerr)
		}
		return fmt.Errorf("node %s: %s: %w; put back: %s's kubeadm, kubelet, kubectl and kubelet configuration from %s, uncordoned and Ready%s",
			t.in.Name, s.name, err, t.res.Before, backupDir(r.res.To), nr.staticPodsNote())
	}
	t.res.After = r.res.To
	t.res.Seconds = time.Since(start).Seconds()
	r.o.Status.Printf("%s: %s in %.0fs", t.in.Name, r.res.To, t.res.Seconds)
	if r.clusterVersion != r.res.To && t.cp {
		r.clusterVersion = r.res.To // apply done: the other control planes run upgrade node
	}
	return nil
}

// staticPodsNote says what became of a control plane's static pods when
// it was put back.
func (nr *nodeRun) staticPodsNote() string {
	if !nr.t.cp {
		return ""
	}
	return "; its static pods are what kubeadm left: the old ones when kubeadm failed (kubeadm puts them back), the new ones when a later step failed (a kubelet one minor older than its API server is within the skew policy)"
}

// binaries are the three binaries an upgrade replaces.
var binaries = []string{"kubeadm", "kubelet", "kubectl"}

// backup copies the node's binaries, kubelet configuration and static pod
// manifests to backupDir once: a later run (after an interruption) keeps
// the copy of what ran before the first one. From packages, the running
// packages, the node's repository and its keyring are added to it once too
// (backupDir/apt), whichever way an earlier run went.
func (nr *nodeRun) backup(ctx context.Context) error {
	t := nr.t
	res, err := t.n.Run(ctx, "dirname \"$(command -v kubelet)\"")
	if err != nil {
		return err
	}
	nr.bin = strings.TrimSpace(string(res.Stdout))
	if nr.bin == "" {
		return errors.New("no kubelet on the PATH")
	}
	dir := backupDir(nr.r.res.To)
	script := fmt.Sprintf(`set -e
d=%[1]s; bin=%[2]s
if [ ! -e "$d/done" ]; then
  rm -rf "$d.tmp"; mkdir -p -m 0700 "$d.tmp"
  for b in %[3]s; do cp -p "$bin/$b" "$d.tmp/$b"; done
  cp -p %[4]s "$d.tmp/kubelet-config.yaml"
  [ ! -e %[5]s ] || cp -p %[5]s "$d.tmp/kubeadm-flags.env"
  [ ! -d %[6]s ] || cp -a %[6]s "$d.tmp/manifests"
  echo "$bin" > "$d.tmp/bin_dir"
  touch "$d.tmp/done"
  rm -rf "$d"; mv "$d.tmp" "$d"
fi`, node.ShellQuote(dir), node.ShellQuote(nr.bin), strings.Join(binaries, " "),
		kubeadm.KubeletConfigFile, kubeadm.KubeletDir+"/kubeadm-flags.env", kubeadm.ManifestsDir)
	if t.pkg != nil {
		script += "\n" + nr.backupAptScript()
	}
	return nr.r.o.Status.Do(t.in.Name+": backup of its binaries and kubelet configuration in "+dir, func() error {
		_, err := t.n.Run(ctx, script)
		return err
	})
}

// install puts the staged binary b in place (atomically: a running one is
// never written to).
func (nr *nodeRun) install(ctx context.Context, from, b string) error {
	_, err := nr.t.n.Run(ctx, fmt.Sprintf("install -m 0755 %s %s && mv -f %s %s",
		node.ShellQuote(from+"/"+b), node.ShellQuote(nr.bin+"/."+b+".kbootstrap-new"),
		node.ShellQuote(nr.bin+"/."+b+".kbootstrap-new"), node.ShellQuote(nr.bin+"/"+b)))
	return err
}

// installTarget puts the target's bs in place: their packages (held), or
// the staged binaries of Binaries.
func (nr *nodeRun) installTarget(ctx context.Context, bs ...string) error {
	if nr.t.pkg != nil {
		_, err := nr.t.n.Run(ctx, installScript(aptDir(nr.r.res.To, ""), bs...))
		return err
	}
	for _, b := range bs {
		if err := nr.install(ctx, stageDir(nr.r.res.To), b); err != nil {
			return err
		}
	}
	return nil
}

// kubeadm runs kubeadm upgrade apply (the first control plane) or node with
// the new kubeadm; a control plane's API server is out of the load
// balancer meanwhile.
func (nr *nodeRun) kubeadm(ctx context.Context) error {
	t := nr.t
	if err := nr.installTarget(ctx, "kubeadm"); err != nil {
		return err
	}
	cmd := "kubeadm upgrade node"
	if nr.apply {
		cmd = "kubeadm upgrade apply --yes " + node.ShellQuote(nr.r.res.To)
	}
	run := func() error {
		return nr.r.o.Status.Do(t.in.Name+": "+cmd, func() error {
			s0 := time.Now()
			_, err := t.n.Run(ctx, cmd)
			t.res.KubeadmSeconds = time.Since(s0).Seconds()
			return err
		})
	}
	if !t.cp {
		return run()
	}
	return apidrain.During(ctx, nr.r.o.Status, apidrain.Options{Inventory: nr.r.o.Inventory, Connector: nr.r.o.Connector, Node: t.n, Name: t.in.Name}, func() error {
		if err := nr.handOffEtcd(ctx); err != nil {
			return err
		}
		if err := run(); err != nil {
			return err
		}
		return nr.staticPods(ctx)
	})
}

// handOffEtcd moves the etcd leadership off the node's member before
// kubeadm restarts it: a follower's restart needs no election, during
// which the other members' API servers would fail requests.
func (nr *nodeRun) handOffEtcd(ctx context.Context) error {
	t := nr.t
	step := nr.r.o.Status.Start(t.in.Name + ": etcd leadership")
	cli, err := etcd.ConnectAsAPIServer(ctx, t.n, etcd.ClientOptions{Timeout: 10 * time.Second, Endpoints: []string{kubeadm.LocalEtcd}})
	if err != nil {
		step.End(err)
		return err
	}
	defer cli.Close()
	to, err := cli.HandOffLeadership(ctx)
	switch {
	case err != nil:
	case to == nil:
		step.SetTitle(t.in.Name + ": etcd leadership: a follower already")
	default:
		step.SetTitle(t.in.Name + ": etcd leadership handed to " + to.Name)
	}
	step.End(err)
	return err
}

// staticPods waits until the node's control-plane manifests name the
// target and every component (etcd first) is healthy, and its etcd member
// with the others.
func (nr *nodeRun) staticPods(ctx context.Context) error {
	t := nr.t
	return nr.r.o.Status.Do(t.in.Name+": static pods at "+nr.r.res.To+" and healthy", func() error {
		for _, c := range []string{kubeadm.Etcd, kubeadm.APIServer, kubeadm.ControllerManager, kubeadm.Scheduler} {
			if c != kubeadm.Etcd {
				v, err := componentVersion(ctx, t.n, c)
				if err != nil {
					return err
				}
				if !v.EqualTo(nr.r.to) {
					return fmt.Errorf("%s runs %s after kubeadm, not %s", kubeadm.Manifest(c), v, nr.r.res.To)
				}
			}
			if err := nr.r.wait(ctx, c+" healthy", func(ctx context.Context) error { return kubeadm.Healthy(ctx, t.n, c) }); err != nil {
				return err
			}
		}
		return nr.r.wait(ctx, "every etcd member healthy", func(ctx context.Context) error {
			cli, err := etcd.ConnectAsAPIServer(ctx, t.n, etcd.ClientOptions{Timeout: 10 * time.Second})
			if err != nil {
				return err
			}
			defer cli.Close()
			return cli.Health(ctx)
		})
	})
}

// kubelet replaces the kubelet and kubectl (from packages: and switches
// the node's repository to the target's minor) and restarts the kubelet; a
// kubelet that keeps exiting fails at once, with its last words.
func (nr *nodeRun) kubelet(ctx context.Context) error {
	t := nr.t
	title := t.in.Name + ": kubelet and kubectl " + nr.r.res.To + ", kubelet restarted"
	if t.pkg != nil {
		title = t.in.Name + ": kubelet and kubectl " + nr.r.res.To + " from " + t.pkg.uri + " (held, the node's repository switched to it), kubelet restarted"
	}
	return nr.r.o.Status.Do(title, func() error {
		if err := nr.installTarget(ctx, "kubelet", "kubectl"); err != nil {
			return err
		}
		if t.pkg != nil {
			if err := nr.switchSource(ctx); err != nil {
				return err
			}
		}
		return nr.restartKubelet(ctx)
	})
}

// restartKubelet restarts the node's kubelet, noting first the Node's
// Ready heartbeat, which the ready gate must see a newer one of.
func (nr *nodeRun) restartKubelet(ctx context.Context) error {
	nr.heartbeat = nr.r.readyHeartbeat(ctx, nr.t.in.Name)
	return kubeadm.RestartKubelet(ctx, nr.t.n)
}

// ready waits until the Node is Ready with its kubelet at the target and,
// on a control plane, the API shows its static pods (their mirror pods) at
// the target and Ready: the kubelet recreates them after its restart.
func (nr *nodeRun) ready(ctx context.Context) error {
	return nr.r.o.Status.Do(nr.t.in.Name+": Node Ready, kubelet "+nr.r.res.To, func() error {
		if err := nr.r.nodeReady(ctx, nr.t.in.Name, nr.r.res.To, nr.heartbeat); err != nil || !nr.t.cp {
			return err
		}
		return nr.r.wait(ctx, nr.t.in.Name+"'s static pods Ready at "+nr.r.res.To+" in the API", func(ctx context.Context) error {
			var errs []error
			for _, c := range []string{kubeadm.Etcd, kubeadm.APIServer, kubeadm.ControllerManager, kubeadm.Scheduler} {
				p, err := nr.r.cs.CoreV1().Pods("kube-system").Get(ctx, c+"-"+nr.t.in.Name, metav1.GetOptions{})
				switch {
				case err != nil:
					errs = append(errs, err)
				case len(p.Spec.Containers) == 0:
					errs = append(errs, fmt.Errorf("pod %s has no container", p.Name))
				case c != kubeadm.Etcd && !strings.HasSuffix(p.Spec.Containers[0].Image, ":"+nr.r.res.To):
					errs = append(errs, fmt.Errorf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image))
				case !podutils.IsPodReady(p):
					errs = append(errs, fmt.Errorf("pod %s not Ready", p.Name))
				}
			}
			return errors.Join(errs...)
		})
	})
}

// readyHeartbeat is the Node's Ready heartbeat now (zero when the API does
// not answer: then any Ready counts).
func (r *run) readyHeartbeat(ctx context.Context, name string) time.Time {
	n, err := r.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return time.Time{}
	}
	return kubeadm.ReadyHeartbeat(n)
}

// nodeReady waits until the Node is Ready at version v by a status its
// kubelet posted after heartbeat (the one it had before a restart: a
// kubelet put back at the version it had would otherwise pass on its
// predecessor's stale Ready).
func (r *run) nodeReady(ctx context.Context, name, v string, heartbeat time.Time) error {
	return r.wait(ctx, "Node "+name+" Ready at "+v, func(ctx context.Context) error {
		n, err := r.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := n.Status.NodeInfo.KubeletVersion; got != v {
			return fmt.Errorf("its kubelet reports %s", got)
		}
		return kubeadm.ReadySince(n, heartbeat)
	})
}

// rollback puts the node back from its backup: binaries (from packages:
// the running packages, held, and the node's repository and keyring),
// kubelet configuration, the kubelet restarted and Ready at its old version, the
// API server back in the load balancer (apidrain.During already did) and
// the node uncordoned.
func (nr *nodeRun) rollback(ctx context.Context) error {
	t := nr.t
	dir := backupDir(nr.r.res.To)
	st := nr.r.o.Status.Start(t.in.Name + ": putting it back from " + dir)
	err := func() error {
		if t.pkg != nil {
			if err := nr.rollbackPackages(ctx, dir); err != nil {
				return err
			}
		} else {
			for _, b := range binaries {
				if err := nr.install(ctx, dir, b); err != nil {
					return err
				}
			}
		}
		if _, err := t.n.Run(ctx, fmt.Sprintf(`set -e
cp -p %[1]s/kubelet-config.yaml %[2]s
[ ! -e %[1]s/kubeadm-flags.env ] || cp -p %[1]s/kubeadm-flags.env %[3]s`, node.ShellQuote(dir), kubeadm.KubeletConfigFile, kubeadm.KubeletDir+"/kubeadm-flags.env")); err != nil {
			return err
		}
		if err := nr.restartKubelet(ctx); err != nil {
			return err
		}
		return nr.r.nodeReady(ctx, t.in.Name, "v"+t.kubelet.String(), nr.heartbeat)
	}()
	err = errors.Join(err, nr.uncordon(ctx))
	st.End(err)
	return err
}

// cleanKubeadmBackups keeps the Keep newest of each kind of kubeadm's
// backups (kubeadm-backup-etcd-*, kubeadm-backup-manifests-*) under
// /etc/kubernetes/tmp, which kubeadm never removes, and the staged binaries.
func (r *run) cleanKubeadmBackups(ctx context.Context, todo []*target) {
	script := fmt.Sprintf(`for kind in etcd manifests; do
  ls -1dt %[1]s/kubeadm-backup-$kind-* 2>/dev/null | tail -n +%[2]d | while read -r d; do rm -rf "$d"; done
done
rm -rf %[3]s`, kubeadm.TmpDir, r.o.Keep+1, node.ShellQuote(stageDir(r.res.To)))
	if err := eachTarget(ctx, todo, func(ctx context.Context, t *target) error {
		_, err := t.n.Run(ctx, script)
		return err
	}); err != nil {
		r.o.Status.Printf("removing kubeadm's older backups: %v", err)
	}
}
