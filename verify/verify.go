package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kbootstrap/kbootstrap/internal/poll"
	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/progress"
	"github.com/kbootstrap/kbootstrap/report"
)

// Groups of checks, in the order they run; each check id starts with its
// group's name and a dot.
const (
	GroupNodes         = "nodes"
	GroupPodNetwork    = "pod-network"
	GroupService       = "service"
	GroupNodePort      = "nodeport"
	GroupDNS           = "dns"
	GroupNetworkPolicy = "networkpolicy"
)

// AllGroups are every group, in order; FastGroups the part init runs.
var (
	AllGroups  = []string{GroupNodes, GroupPodNetwork, GroupService, GroupNodePort, GroupDNS, GroupNetworkPolicy}
	FastGroups = []string{GroupNodes, GroupPodNetwork, GroupService, GroupDNS}
)

// ErrNoAPI means no control plane of the inventory has a working API server
// kbootstrap could reach.
var ErrNoAPI = errors.New("no control plane's API server answers")

// Options configure Run.
type Options struct {
	Inventory *inventory.Inventory
	Connector node.Connector
	Status    *progress.Status
	Log       *slog.Logger
	// Concurrency bounds the probes and SSH sessions under way at once.
	Concurrency int
	// Timeout bounds the whole run but the clean-up (default 3 minutes).
	Timeout time.Duration
	// Keep leaves the namespace and its workload in place.
	Keep bool
	// Image is the workload's image (default AgnhostImage).
	Image string
	// Groups to run (default AllGroups); unknown names are an error.
	Groups []string
	// Settle is how long the nodes group waits for nodes and kube-system
	// pods still coming up (init: right after a join) before it judges them.
	Settle time.Duration
	// Workstation, when set, says whether this machine can open TCP
	// connections to addr itself (default: a dial to addr's port 22 that
	// connects or is refused within a second).
	Workstation func(ctx context.Context, ip string) bool
}

// Result is what Run found, and the namespace it used.
type Result struct {
	report.Findings
	Namespace string `json:"namespace"`
	// APIServer is the control plane whose API server verify talked to.
	APIServer string `json:"apiServer"`
	// Kept is true when --keep left the namespace in place.
	Kept bool `json:"kept,omitempty"`
	// Seconds per group of checks, and in all.
	GroupSeconds map[string]float64 `json:"groupSeconds"`
	Seconds      float64            `json:"seconds"`
}

// member is a cluster node of the inventory and, once connected, its SSH access.
type member struct {
	inv  inventory.Node
	node node.Node // nil when the connection failed
	err  error
}

// pod is one pod of the workload, once running.
type pod struct {
	name, node, ip string
}

type run struct {
	o       Options
	cs      kubernetes.Interface
	members []*member
	ns      string
	created bool  // the namespace exists: the clean-up removes it
	servers []pod // one per schedulable Ready node
	extra   map[string]pod
	mu      sync.Mutex
	res     *Result
}

// Run proves the cluster works: it creates a namespace with an agnhost
// workload on every schedulable Ready node, probes Services, NodePorts, DNS
// and NetworkPolicies from pods and from nodes (over SSH), and removes the
// namespace again unless Keep. A check that fails is a finding; the error is
// for what kept the checks from running at all (no API server, bad options).
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Minute
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 20
	}
	if o.Image == "" {
		o.Image = AgnhostImage
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Workstation == nil {
		o.Workstation = workstationRoutes
	}
	if len(o.Groups) == 0 {
		o.Groups = AllGroups
	}
	for _, g := range o.Groups {
		if !slices.Contains(AllGroups, g) {
			return nil, fmt.Errorf("unknown group of checks %q (known: %s)", g, strings.Join(AllGroups, ", "))
		}
	}
	start := time.Now()
	r := &run{o: o, res: &Result{GroupSeconds: map[string]float64{}}, extra: map[string]pod{}}
	runCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := r.connect(runCtx); err != nil {
		return nil, err
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	r.ns = NamespacePrefix + hex.EncodeToString(suffix)
	r.res.Namespace = r.ns
	defer func() {
		// The clean-up runs even when ctx was cancelled (Ctrl-C), bounded on
		// its own; Seconds counts it.
		defer func() { r.res.Seconds = round(time.Since(start).Seconds()) }()
		if !r.created {
			return
		}
		if o.Keep {
			r.res.Kept = true
			o.Status.Printf("• Kept namespace %s (kubectl delete namespace %s)", r.ns, r.ns)
			return
		}
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer ccancel()
		t := time.Now()
		if err := r.o.Status.Do("Removing namespace "+r.ns, func() error { return r.cleanup(cctx) }); err != nil {
			r.add(report.Finding{Check: "verify.cleanup", Severity: report.Warn,
				Message: fmt.Sprintf("namespace %s not removed: %v (kubectl delete namespace %s)", r.ns, err, r.ns)})
		}
		r.res.GroupSeconds["cleanup"] = round(time.Since(t).Seconds())
	}()
	type group struct {
		name string
		run  func(context.Context) error
	}
	groups := []group{
		{GroupNodes, r.checkNodes},
		{"workload", r.deploy},
		{GroupPodNetwork, r.checkPodNetwork},
		{GroupService, r.checkServices},
		{GroupNodePort, r.checkNodePort},
		{GroupDNS, r.checkDNS},
		{GroupNetworkPolicy, r.checkNetworkPolicy},
	}
	for _, g := range groups {
		if g.name != "workload" && !slices.Contains(o.Groups, g.name) {
			continue
		}
		if g.name == "workload" && len(o.Groups) == 1 && o.Groups[0] == GroupNodes {
			continue
		}
		if err := runCtx.Err(); err != nil {
			r.add(report.Finding{Check: g.name + ".run", Severity: report.Fail, Message: "not run: " + timeoutMessage(ctx, o.Timeout)})
			continue
		}
		t := time.Now()
		before := len(r.res.Findings.Findings)
		st := o.Status.Start(groupTitle(g.name))
		err := g.run(runCtx)
		secs := time.Since(t).Seconds()
		r.res.GroupSeconds[g.name] = round(secs)
		if err != nil {
			r.add(report.Finding{Check: g.name + ".run", Severity: report.Fail, Message: err.Error(), Seconds: round(secs)})
		}
		if g.name == "workload" && err == nil {
			st.SetTitle(fmt.Sprintf("%s: %d pods running", groupTitle(g.name), len(r.servers)+len(r.extra)))
		} else {
			st.SetTitle(groupTitle(g.name) + ": " + summary(r.res.Findings.Findings[before:]))
		}
		st.End(failed(r.res.Findings.Findings[before:]))
		if g.name == "workload" && len(r.servers) == 0 {
			break // nothing to probe from
		}
	}
	return r.res, nil
}

func groupTitle(g string) string {
	switch g {
	case "workload":
		return "Workload (agnhost on every schedulable node)"
	case GroupNodes:
		return "Nodes and kube-system"
	case GroupPodNetwork:
		return "Pod network"
	case GroupService:
		return "Services"
	case GroupNodePort:
		return "NodePort"
	case GroupDNS:
		return "DNS"
	case GroupNetworkPolicy:
		return "NetworkPolicy"
	}
	return g
}

func summary(fs []report.Finding) string {
	var ok, warn, fail int
	for _, f := range fs {
		switch f.Severity {
		case report.OK:
			ok++
		case report.Warn:
			warn++
		default:
			fail++
		}
	}
	s := fmt.Sprintf("%d ok", ok)
	if warn > 0 {
		s += fmt.Sprintf(", %d warning(s)", warn)
	}
	if fail > 0 {
		s += fmt.Sprintf(", %d failed", fail)
	}
	return s
}

// failed is an error for the progress line when a finding failed.
func failed(fs []report.Finding) error {
	var errs []string
	for _, f := range fs {
		if f.Severity == report.Fail {
			n := f.Node
			if n == "" {
				n = "cluster"
			}
			errs = append(errs, n+" "+f.Check)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, ", "))
}

func round(s float64) float64 { return float64(int64(s*1000+0.5)) / 1000 }

func timeoutMessage(ctx context.Context, d time.Duration) string {
	if ctx.Err() != nil {
		return "interrupted"
	}
	return fmt.Sprintf("--timeout %s reached", d)
}

// add records a finding, stamped now.
func (r *run) add(f report.Finding) {
	if f.Time == "" {
		f.Time = time.Now().UTC().Format(time.RFC3339Nano)
	}
	r.mu.Lock()
	r.res.Add(f)
	r.mu.Unlock()
}

// judge records one check: ok with okMsg when err is nil, else fail with err.
func (r *run) judge(nodeName, check string, start time.Time, err error, okMsg string) {
	f := report.Finding{Node: nodeName, Check: check, Severity: report.OK, Message: okMsg, Seconds: round(time.Since(start).Seconds())}
	if err != nil {
		f.Severity, f.Message = report.Fail, err.Error()
	}
	r.add(f)
}

// connect finds a control plane whose API server answers and connects to
// every cluster node of the inventory (SSH failures are kept per node).
func (r *run) connect(ctx context.Context) error {
	var errs []error
	for _, in := range r.o.Inventory.ByRole(inventory.RoleControlPlane) {
		n, err := r.o.Connector.Connect(ctx, in)
		if err != nil {
			errs = append(errs, &node.NodeError{Node: in.Name, Err: err})
			continue
		}
		n = node.Sudo(n)
		cs, err := kubeadm.AdminClient(ctx, n, "https://"+net.JoinHostPort(in.InternalIP(), "6443"))
		if err == nil {
			err = cs.CoreV1().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
		}
		if err != nil {
			errs = append(errs, &node.NodeError{Node: in.Name, Err: err})
			continue
		}
		r.cs, r.res.APIServer = cs, in.Name
		break
	}
	if r.cs == nil {
		return errors.Join(append([]error{ErrNoAPI}, errs...)...)
	}
	var ins []inventory.Node
	for _, in := range r.o.Inventory.Nodes {
		if in.Role != inventory.RoleLoadBalancer {
			ins = append(ins, in)
		}
	}
	ms, _ := node.Parallel(ctx, ins, r.o.Concurrency, func(ctx context.Context, in inventory.Node) (*member, error) {
		n, err := r.o.Connector.Connect(ctx, in)
		return &member{inv: in, node: n, err: err}, nil
	})
	for i, m := range ms {
		if m == nil { // ctx ended before its turn
			ms[i] = &member{inv: ins[i], err: ctx.Err()}
		}
	}
	r.members = ms
	return nil
}

// deploy creates the namespace, the Services and a server pod on every
// Ready, schedulable node (and the policy pods when that group runs), and
// waits until they run; it then marks the servers ready.
func (r *run) deploy(ctx context.Context) error {
	nodes, err := r.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var targets []string
	for _, n := range nodes.Items {
		if nodeReady(&n) == nil && !n.Spec.Unschedulable {
			targets = append(targets, n.Name)
		}
	}
	sort.Strings(targets)
	if len(targets) == 0 {
		return errors.New("no Ready, schedulable node to place the workload on")
	}
	if _, err := r.cs.CoreV1().Namespaces().Create(ctx, newNamespace(r.ns), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", r.ns, err)
	}
	r.created = true
	for _, s := range newServices(r.ns) {
		if _, err := r.cs.CoreV1().Services(r.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create service %s/%s: %w", r.ns, s.Name, err)
		}
	}
	var pods []*corev1.Pod
	for i, n := range targets {
		pods = append(pods, newPod(r.ns, fmt.Sprintf("srv-%d", i), n, r.o.Image, true))
	}
	if slices.Contains(r.o.Groups, GroupNetworkPolicy) {
		// Target, clients and the egress pod on different nodes where there are some.
		at := func(i int) string { return targets[i%len(targets)] }
		pods = append(pods,
			newPod(r.ns, podTarget, at(0), r.o.Image, false),
			newPod(r.ns, podAllowed, at(1), r.o.Image, false, labelClient, "allowed"),
			newPod(r.ns, podDenied, at(2), r.o.Image, false),
			newPod(r.ns, podEgress, at(3), r.o.Image, false))
	}
	for _, p := range pods {
		if _, err := r.cs.CoreV1().Pods(r.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create pod %s/%s: %w", r.ns, p.Name, err)
		}
	}
	// Wait until each runs; one that does not is that node's finding.
	start := time.Now()
	running := map[string]*corev1.Pod{}
	byName := map[string]*corev1.Pod{} // the last listing, for why a pod does not run
	var last error
	_ = poll.Until(ctx, 90*time.Second, 500*time.Millisecond, "workload", func(ctx context.Context) error {
		list, err := r.cs.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err
			return err
		}
		for i := range list.Items {
			p := &list.Items[i]
			byName[p.Name] = p
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && containersReady(p) {
				running[p.Name] = p
			}
		}
		if len(running) < len(pods) {
			last = fmt.Errorf("%d of %d pods running", len(running), len(pods))
			return last
		}
		return nil
	})
	for _, want := range pods {
		p, ok := running[want.Name]
		if !ok {
			why := "not created"
			if q := byName[want.Name]; q != nil {
				why = podTrouble(q)
			}
			r.judge(want.Spec.NodeName, GroupPodNetwork+".workload", start,
				fmt.Errorf("pod %s/%s (image %s) not running within 90s: %s", r.ns, want.Name, r.o.Image, why), "")
			continue
		}
		pd := pod{name: p.Name, node: p.Spec.NodeName, ip: p.Status.PodIP}
		if p.Labels[labelRole] == roleServer {
			r.servers = append(r.servers, pd)
		} else {
			r.extra[p.Name] = pd
		}
	}
	sort.Slice(r.servers, func(i, j int) bool { return r.servers[i].node < r.servers[j].node })
	for _, s := range r.servers {
		if err := r.setReady(ctx, s.name, true); err != nil {
			return err
		}
	}
	if len(r.servers) == 0 && last != nil {
		return fmt.Errorf("no pod of the workload runs: %w", last)
	}
	return nil
}

func containersReady(p *corev1.Pod) bool {
	for _, c := range p.Status.ContainerStatuses {
		if !c.Ready {
			return false
		}
	}
	return len(p.Status.ContainerStatuses) > 0
}

// podTrouble says why a pod does not run, from its status.
func podTrouble(p *corev1.Pod) string {
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			return strings.TrimSpace(w.Reason + " " + w.Message)
		}
		if t := c.State.Terminated; t != nil {
			return fmt.Sprintf("terminated: %s (exit %d)", t.Reason, t.ExitCode)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return string(c.Type) + ": " + c.Message
		}
	}
	return "phase " + string(p.Status.Phase)
}

// setReady sets a server's readiness gate, which alone decides whether it is
// Ready (its container has no probe).
func (r *run) setReady(ctx context.Context, name string, ready bool) error {
	status := corev1.ConditionTrue
	if !ready {
		status = corev1.ConditionFalse
	}
	return retryConflict(ctx, func() error {
		p, err := r.cs.CoreV1().Pods(r.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cond := corev1.PodCondition{Type: readinessGate, Status: status, LastTransitionTime: metav1.Now()}
		i := slices.IndexFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == readinessGate })
		if i < 0 {
			p.Status.Conditions = append(p.Status.Conditions, cond)
		} else {
			p.Status.Conditions[i] = cond
		}
		_, err = r.cs.CoreV1().Pods(r.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("pod %s/%s: set %s=%s: %w", r.ns, name, readinessGate, status, err)
		}
		return nil
	})
}

func retryConflict(ctx context.Context, f func() error) error {
	var err error
	for range 5 {
		if err = f(); err == nil || !apierrors.IsConflict(err) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
	}
	return err
}

// cleanup deletes the namespace and waits until it is gone. The Services
// and pods go first: the pods at once (the namespace controller would give
// each its grace period and wait for its kubelet; the kubelets stop the
// containers after), the Services so that no controller writes
// EndpointSlices into a namespace being emptied (each such write fails the
// namespace controller's pass, and its retries back off).
func (r *run) cleanup(ctx context.Context) error {
	zero := int64(0)
	for _, s := range newServices(r.ns) {
		if err := r.cs.CoreV1().Services(r.ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			r.o.Log.Debug("delete service", "namespace", r.ns, "name", s.Name, "error", err)
		}
	}
	err := r.cs.CoreV1().Pods(r.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		r.o.Log.Debug("delete pods", "namespace", r.ns, "error", err)
	}
	err = r.cs.CoreV1().Namespaces().Delete(ctx, r.ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return poll.Until(ctx, time.Minute, 500*time.Millisecond, "namespace "+r.ns+" gone", func(ctx context.Context) error {
		_, err := r.cs.CoreV1().Namespaces().Get(ctx, r.ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return errors.New("still terminating")
	})
}

// workstationRoutes reports whether this machine reaches ip itself: a TCP
// connection to its port 22 opens or is refused within a second.
func workstationRoutes(ctx context.Context, ip string) bool {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, "22"))
	if err == nil {
		c.Close()
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "refused")
}
