package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/progress"
)

// fakeWorker is a worker as the upgrade sees it: its commands are
// recorded, its installed kubelet's version is what the API reports a
// moment after a kubelet restart (as a real kubelet's first status, with a
// new Ready heartbeat: until then the Node keeps its predecessor's), and
// its /healthz answers while that kubelet starts.
type fakeWorker struct {
	mu        sync.Mutex
	cmds      []string
	cs        *fake.Clientset
	kubelet   string // version of /usr/bin/kubelet
	starts    bool   // the installed kubelet starts
	broken    bool   // the staged kubelet never starts
	kubeadm   error  // what kubeadm upgrade node returns
	onKubeadm func() // called when kubeadm upgrade runs
	restarts  int
	healthz   *httptest.Server
	posting   sync.WaitGroup // the kubelets' first statuses not posted yet
	unposted  int
}

func (f *fakeWorker) Name() string     { return "worker1" }
func (f *fakeWorker) Privileged() bool { return true }

var installRE = regexp.MustCompile(`^install -m 0755 '?([^' ]+)/kubelet'? `)

func (f *fakeWorker) Run(ctx context.Context, cmd string, _ ...node.ExecOption) (node.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, cmd)
	out := ""
	switch {
	case strings.HasPrefix(cmd, "dirname"):
		out = "/usr/bin\n"
	case strings.HasPrefix(cmd, "kubeadm upgrade"):
		if f.onKubeadm != nil {
			f.onKubeadm()
		}
		return node.Result{}, f.kubeadm
	case installRE.MatchString(cmd):
		f.kubelet, f.starts = "v1.34.4", !f.broken
		if installRE.FindStringSubmatch(cmd)[1] == backupDir("v1.34.4") {
			f.kubelet, f.starts = "v1.33.13", true
		}
	case strings.HasPrefix(cmd, "systemctl daemon-reload"):
		if f.starts {
			v := f.kubelet
			f.unposted++
			f.posting.Add(1)
			go func() {
				defer f.posting.Done()
				time.Sleep(300 * time.Millisecond)
				n, _ := f.cs.CoreV1().Nodes().Get(context.Background(), "worker1", metav1.GetOptions{})
				n.Status.NodeInfo.KubeletVersion = v
				n.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
				f.cs.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
				f.mu.Lock()
				f.unposted--
				f.mu.Unlock()
			}()
		}
	case strings.HasPrefix(cmd, "systemctl show kubelet"):
		if !f.starts {
			f.restarts++
		}
		out = fmt.Sprintf("%d\n", f.restarts)
	}
	return node.Result{Stdout: []byte(out)}, nil
}

func (f *fakeWorker) Dial(ctx context.Context, network, _ string) (net.Conn, error) {
	f.mu.Lock()
	starts := f.starts
	f.mu.Unlock()
	if !starts {
		return nil, errors.New("connection refused")
	}
	return (&net.Dialer{}).DialContext(ctx, network, f.healthz.Listener.Addr().String())
}

func (f *fakeWorker) ReadFile(context.Context, string) ([]byte, error) { return nil, fs.ErrNotExist }
func (f *fakeWorker) Stat(context.Context, string) (node.FileInfo, error) {
	return node.FileInfo{}, fs.ErrNotExist
}
func (f *fakeWorker) ReadDir(context.Context, string) ([]node.FileInfo, error) { return nil, nil }
func (f *fakeWorker) WriteFile(context.Context, string, io.Reader, node.WriteOptions) error {
	return errors.ErrUnsupported
}
func (f *fakeWorker) Remove(context.Context, string) error { return nil }

func newFakeWorker(t *testing.T) (*fakeWorker, *run, *target) {
	t.Helper()
	obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker1"}, Status: corev1.NodeStatus{
		NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.33.13"},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(time.Now().Add(-time.Hour))}},
	}}
	cs := fake.NewClientset(obj)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	f := &fakeWorker{cs: cs, kubelet: "v1.33.13", starts: true, healthz: srv}
	t.Cleanup(f.posting.Wait)
	st := progress.NewStatus(io.Discard, false, nil)
	t.Cleanup(st.Close)
	r := &run{
		o:              Options{Status: st, Timeout: 5 * time.Second, DrainTimeout: 5 * time.Second, MaxUnavailable: 1},
		to:             version.MustParseSemantic("v1.34.4"),
		cs:             cs,
		clusterVersion: "v1.34.4",
		res:            &Result{To: "v1.34.4"},
	}
	tg := &target{in: inventory.Node{Name: "worker1", Role: inventory.RoleWorker}, n: f, kubelet: version.MustParseSemantic("v1.33.13"),
		res: &NodeResult{Node: "worker1", Role: "worker", Before: "v1.33.13"}}
	r.targets = []*target{tg}
	return f, r, tg
}

func (f *fakeWorker) ran(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cmds {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func schedulable(t *testing.T, r *run) {
	t.Helper()
	n, err := r.cs.CoreV1().Nodes().Get(context.Background(), "worker1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.Unschedulable || n.Annotations[cordonedBy] != "" {
		t.Errorf("worker1 after the upgrade: unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
	}
}

// TestUpgradeWorker: a worker's steps in order, uncordoned at the end.
func TestUpgradeWorker(t *testing.T) {
	f, r, tg := newFakeWorker(t)
	if err := r.upgradeNode(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	if !f.ran("kubeadm upgrade node") || f.kubelet != "v1.34.4" || tg.res.After != "v1.34.4" || tg.res.Action != "node" {
		t.Errorf("kubeadm ran %v, kubelet %s, result %+v", f.ran("kubeadm upgrade node"), f.kubelet, *tg.res)
	}
	var names []string
	for _, s := range tg.res.Steps {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "backup drain kubeadm kubelet ready uncordon" {
		t.Errorf("steps %q", got)
	}
	schedulable(t, r)
}

// TestUpgradeWorkerPutBack: a kubelet that does not start, and a kubeadm
// that fails: the node is put back from its copy, Ready at its old
// version and uncordoned, and the error names the node, the step and the
// way back.
func TestUpgradeWorkerPutBack(t *testing.T) {
	for _, tc := range []struct {
		name, step string
		broken     func(f *fakeWorker)
	}{
		{"the new kubelet keeps exiting", "kubelet", func(f *fakeWorker) { f.broken = true }},
		{"kubeadm fails", "kubeadm", func(f *fakeWorker) { f.kubeadm = &node.ExitError{Cmd: "kubeadm upgrade node", ExitCode: 1} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, r, tg := newFakeWorker(t)
			tc.broken(f)
			err := r.upgradeNode(context.Background(), tg)
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range []string{"node worker1: " + tc.step + ":", "put back", backupDir("v1.34.4")} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if f.kubelet != "v1.33.13" || tg.res.Action != "rolled back" || !f.ran("install -m 0755 "+backupDir("v1.34.4")+"/kubelet") {
				t.Errorf("after the failure: kubelet %s, action %s; commands %q", f.kubelet, tg.res.Action, f.cmds)
			}
			f.mu.Lock()
			unposted := f.unposted
			f.mu.Unlock()
			if unposted != 0 {
				t.Errorf("put back while the restored kubelet had not posted its status yet: Ready by its predecessor's")
			}
			n, _ := r.cs.CoreV1().Nodes().Get(context.Background(), "worker1", metav1.GetOptions{})
			if n.Status.NodeInfo.KubeletVersion != "v1.33.13" {
				t.Errorf("worker1 reports kubelet %s after the put back", n.Status.NodeInfo.KubeletVersion)
			}
			schedulable(t, r)
		})
	}
}

// TestUpgradeWorkerInterrupted: an interrupt before a node leaves it
// untouched; one during its kubeadm step lets it finish whole.
func TestUpgradeWorkerInterrupted(t *testing.T) {
	f, r, tg := newFakeWorker(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.upgradeNode(ctx, tg); !errors.Is(err, ErrInterrupted) || len(f.cmds) != 0 {
		t.Errorf("interrupted before worker1: %v, commands %q", err, f.cmds)
	}

	f, r, tg = newFakeWorker(t)
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	f.onKubeadm = cancel
	if err := r.upgradeNode(ctx, tg); err != nil || f.kubelet != "v1.34.4" || tg.res.After != "v1.34.4" {
		t.Errorf("interrupted during kubeadm: %v, kubelet %s", err, f.kubelet)
	}
	schedulable(t, r)
}
