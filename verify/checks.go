package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/kubectl/pkg/util/podutils"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kbootstrap/kbootstrap/inventory"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/report"
)

// enforceWithin is how long a new NetworkPolicy may take to reach the nodes
// (an implementation that watches policies needs a second or two).
const enforceWithin = 15 * time.Second

// ErrNotEnforced is the finding of a network that lets traffic through that
// a NetworkPolicy denies.
var ErrNotEnforced = errors.New("NetworkPolicy is not enforced by this cluster's network")

// each calls f for every item, at most conc at once, and waits.
func each[T any](conc int, items []T, f func(T)) {
	sem := make(chan struct{}, max(conc, 1))
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(it)
		}()
	}
	wg.Wait()
}

func nodeReady(n *corev1.Node) error {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("NotReady (%s: %s): look at the kubelet on %s (journalctl -u kubelet)", c.Reason, c.Message, n.Name)
		}
	}
	return fmt.Errorf("no Ready condition: the kubelet on %s never reported", n.Name)
}

// checkNodes: every node of the inventory is a Ready node of the cluster,
// every kube-system pod runs and is ready, CoreDNS has ready replicas. With
// Settle, failures are judged again until they pass or Settle is over.
func (r *run) checkNodes(ctx context.Context) error {
	deadline := time.Now().Add(r.o.Settle)
	for {
		before := len(r.res.Findings.Findings)
		err := r.judgeNodes(ctx)
		if err == nil && failed(r.res.Findings.Findings[before:]) == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		r.mu.Lock()
		r.res.Findings.Findings = r.res.Findings.Findings[:before]
		r.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func (r *run) judgeNodes(ctx context.Context) error {
	start := time.Now()
	nodes, err := r.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	byName := map[string]*corev1.Node{}
	for i := range nodes.Items {
		byName[nodes.Items[i].Name] = &nodes.Items[i]
	}
	for _, m := range r.members {
		n := byName[m.inv.Name]
		if n == nil {
			r.judge(m.inv.Name, "nodes.ready", start, errors.New("in the inventory but not a node of the cluster (kbootstrap join adds it)"), "")
			continue
		}
		r.judge(m.inv.Name, "nodes.ready", start, nodeReady(n), "Ready, kubelet "+n.Status.NodeInfo.KubeletVersion)
	}
	for _, n := range nodes.Items {
		if !slices.ContainsFunc(r.members, func(m *member) bool { return m.inv.Name == n.Name }) {
			r.add(report.Finding{Node: n.Name, Check: "nodes.ready", Severity: report.Warn,
				Message: "a node of the cluster that the inventory does not list (not checked over SSH)"})
		}
	}
	pods, err := r.cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list kube-system pods: %w", err)
	}
	bad, count := map[string][]string{}, map[string]int{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		count[p.Spec.NodeName]++
		if p.Status.Phase != corev1.PodRunning || !podutils.IsPodReady(p) {
			bad[p.Spec.NodeName] = append(bad[p.Spec.NodeName], fmt.Sprintf("kube-system/%s %s (%s)", p.Name, p.Status.Phase, podTrouble(p)))
		}
	}
	var names []string
	for name := range count {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		var err error
		if len(bad[name]) > 0 {
			err = fmt.Errorf("not running and ready: %s", strings.Join(bad[name], "; "))
		}
		r.judge(name, "nodes.system-pods", start, err, fmt.Sprintf("%d kube-system pods running and ready", count[name]))
	}
	d, err := r.cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	switch {
	case err != nil:
		r.judge("", "nodes.coredns", start, fmt.Errorf("kube-system/coredns: %w", err), "")
	case d.Status.ReadyReplicas == 0:
		r.judge("", "nodes.coredns", start, fmt.Errorf("kube-system/coredns has no ready replica (%d wanted): no name resolves in any pod", ptrOr(d.Spec.Replicas, 1)), "")
	default:
		r.judge("", "nodes.coredns", start, nil, fmt.Sprintf("kube-system/coredns: %d/%d replicas ready", d.Status.ReadyReplicas, ptrOr(d.Spec.Replicas, 1)))
	}
	return nil
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// others are the servers on other nodes than nodeName.
func (r *run) others(nodeName string) []pod {
	var out []pod
	for _, s := range r.servers {
		if s.node != nodeName {
			out = append(out, s)
		}
	}
	return out
}

// pairs runs f for every (from, to) pair in parallel and returns the
// failures per from, in to's order.
func pairs[F, T any](conc int, from []F, to func(F) []T, f func(F, T) error) [][]error {
	type job struct{ i, j int }
	var jobs []job
	tos := make([][]T, len(from))
	out := make([][]error, len(from))
	for i := range from {
		tos[i] = to(from[i])
		out[i] = make([]error, len(tos[i]))
		for j := range tos[i] {
			jobs = append(jobs, job{i, j})
		}
	}
	each(conc, jobs, func(jb job) { out[jb.i][jb.j] = f(from[jb.i], tos[jb.i][jb.j]) })
	return out
}

func joinErrs(errs []error) error {
	var msgs []string
	for _, e := range errs {
		if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// checkPodNetwork: a pod on each node reaches a pod on every other node and
// is seen there with its own pod IP (no NAT); each node reaches a pod on
// every other node.
func (r *run) checkPodNetwork(ctx context.Context) error {
	start := time.Now()
	res := pairs(r.o.Concurrency, r.servers, func(c pod) []pod { return r.others(c.node) }, func(c, s pod) error {
		return retry(ctx, 5*time.Second, func(ctx context.Context) error {
			got, err := r.dial(ctx, c.name, s.ip, httpPort, "clientip")
			if err != nil {
				return fmt.Errorf("to pod %s on %s (%s): %w", s.name, s.node, s.ip, err)
			}
			host, _, _ := net.SplitHostPort(got)
			if host != c.ip {
				return fmt.Errorf("pod %s on %s sees the client as %s, not its pod IP %s: the network NATs between pods", s.name, s.node, host, c.ip)
			}
			return nil
		})
	})
	for i, c := range r.servers {
		ok := fmt.Sprintf("pod %s (%s) reaches the pods on %s and is seen with its own IP", c.name, c.ip, nodesOf(r.others(c.node)))
		if len(r.others(c.node)) == 0 {
			ok = "no other node to reach"
		}
		var err error
		if e := joinErrs(res[i]); e != nil {
			err = fmt.Errorf("from pod %s (%s): %w", c.name, c.ip, e)
		}
		r.judge(c.node, GroupPodNetwork+".pod-to-pod", start, err, ok)
	}
	ms := r.reachable()
	res = pairs(r.o.Concurrency, ms, func(m *member) []pod { return r.others(m.inv.Name) }, func(m *member, s pod) error {
		err := retry(ctx, 5*time.Second, func(ctx context.Context) error {
			got, err := fetch(ctx, m.node.Dial, net.JoinHostPort(s.ip, fmt.Sprint(httpPort)), "/hostname")
			if err == nil && got != s.name {
				err = fmt.Errorf("answered by %q", got)
			}
			if err != nil {
				return fmt.Errorf("pod %s on %s (%s): %w", s.name, s.node, s.ip, err)
			}
			return nil
		})
		if err != nil {
			// The node's route to the pod: the first thing to look at.
			if out, rerr := m.node.Run(ctx, "ip -4 route get "+node.ShellQuote(s.ip), node.HideOutput()); rerr == nil {
				err = fmt.Errorf("%w (its route: %s)", err, strings.Join(strings.Fields(strings.SplitN(string(out.Stdout), "\n", 2)[0]), " "))
			}
		}
		return err
	})
	for i, m := range ms {
		var err error
		if e := joinErrs(res[i]); e != nil {
			err = fmt.Errorf("from the node: %w", e)
		}
		r.judge(m.inv.Name, GroupPodNetwork+".node-to-pod", start, err, "reaches the pods on "+nodesOf(r.others(m.inv.Name)))
	}
	r.unreachable(GroupPodNetwork + ".node-to-pod")
	return nil
}

func nodesOf(ps []pod) string {
	var ns []string
	for _, p := range ps {
		ns = append(ns, p.node)
	}
	if len(ns) == 0 {
		return "no other node"
	}
	return strings.Join(ns, ", ")
}

// reachable are the members connected over SSH.
func (r *run) reachable() []*member {
	var out []*member
	for _, m := range r.members {
		if m.node != nil {
			out = append(out, m)
		}
	}
	return out
}

// unreachable records check as failed on the members SSH could not reach.
func (r *run) unreachable(check string) {
	for _, m := range r.members {
		if m.node == nil {
			r.add(report.Finding{Node: m.inv.Name, Check: check, Severity: report.Fail, Message: "not checked: SSH: " + m.err.Error()})
		}
	}
}

func (r *run) serverNames() []string {
	var out []string
	for _, s := range r.servers {
		out = append(out, s.name)
	}
	return out
}

// answeredByServer checks that got names a server.
func (r *run) answeredByServer(got string) error {
	if !slices.Contains(r.serverNames(), got) {
		return fmt.Errorf("answered by %q, not a pod of the Service", clip(got))
	}
	return nil
}

func (r *run) fqdn(svc string) string { return svc + "." + r.ns + ".svc.cluster.local" }

// checkServices: the ClusterIP Service answers from a pod on every node and
// from every node; its EndpointSlices list exactly the ready pods; the
// headless Service and the ExternalName Service resolve.
func (r *run) checkServices(ctx context.Context) error {
	start := time.Now()
	svc, err := r.cs.CoreV1().Services(r.ns).Get(ctx, svcClusterIP, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("service %s/%s: %w", r.ns, svcClusterIP, err)
	}
	vip := svc.Spec.ClusterIP
	where := fmt.Sprintf("Service %s/%s (%s:80)", r.ns, svcClusterIP, vip)
	each(r.o.Concurrency, r.servers, func(s pod) {
		err := retry(ctx, 10*time.Second, func(ctx context.Context) error {
			got, err := r.dial(ctx, s.name, vip, 80, "hostname")
			if err == nil {
				err = r.answeredByServer(got)
			}
			return err
		})
		if err != nil {
			err = fmt.Errorf("%s from pod %s: %w (kube-proxy on %s)", where, s.name, err, s.node)
		}
		r.judge(s.node, GroupService+".clusterip-from-pod", start, err, where+" answers pod "+s.name)
	})
	each(r.o.Concurrency, r.reachable(), func(m *member) {
		err := retry(ctx, 10*time.Second, func(ctx context.Context) error {
			got, err := fetch(ctx, m.node.Dial, net.JoinHostPort(vip, "80"), "/hostname")
			if err == nil {
				err = r.answeredByServer(got)
			}
			return err
		})
		if err != nil {
			err = fmt.Errorf("%s from the node: %w (kube-proxy on %s)", where, err, m.inv.Name)
		}
		r.judge(m.inv.Name, GroupService+".clusterip-from-node", start, err, where+" answers the node")
	})
	r.unreachable(GroupService + ".clusterip-from-node")

	t := time.Now()
	r.judge("", GroupService+".endpointslices", t, r.checkEndpointSlices(ctx), fmt.Sprintf("%s's EndpointSlices list exactly its %d ready pods, and a pod made unready leaves them", svcClusterIP, len(r.servers)))

	headless := r.fqdn(svcHeadless)
	each(r.o.Concurrency, r.servers, func(s pod) {
		t := time.Now()
		var errs []error
		// Retried like every probe of a Service: the pod made unready and
		// ready again just before takes a moment to be back in DNS and in
		// kube-proxy's rules.
		err := retry(ctx, 10*time.Second, func(ctx context.Context) error {
			got, err := r.dial(ctx, s.name, headless, httpPort, "hostname")
			if err == nil {
				err = r.answeredByServer(got)
			}
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", headless, err))
		}
		// Every ready pod has its own name under the headless Service.
		for _, o := range r.servers {
			name := o.name + "." + headless
			err := retry(ctx, 10*time.Second, func(ctx context.Context) error {
				got, err := r.dial(ctx, s.name, name, httpPort, "hostname")
				if err == nil && got != o.name {
					err = fmt.Errorf("answered by %q", clip(got))
				}
				return err
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		err = nil
		if e := joinErrs(errs); e != nil {
			err = fmt.Errorf("from pod %s: %w", s.name, e)
		}
		r.judge(s.node, GroupService+".headless", t, err, fmt.Sprintf("%s and each pod's name under it resolve to the pods", headless))
	})
	ext := r.fqdn(svcExternal)
	each(r.o.Concurrency, r.servers, func(s pod) {
		t := time.Now()
		err := retry(ctx, 10*time.Second, func(ctx context.Context) error {
			got, err := r.dial(ctx, s.name, ext, 80, "hostname")
			if err == nil {
				err = r.answeredByServer(got)
			}
			return err
		})
		if err != nil {
			err = fmt.Errorf("%s (ExternalName, CNAME %s) from pod %s: %w", ext, r.fqdn(svcClusterIP), s.name, err)
		}
		r.judge(s.node, GroupService+".externalname", t, err, ext+" resolves through its CNAME to "+r.fqdn(svcClusterIP))
	})
	return nil
}

// readyAddresses are the addresses the Service's EndpointSlices hold ready.
func (r *run) readyAddresses(ctx context.Context) ([]string, error) {
	list, err := r.cs.DiscoveryV1().EndpointSlices(r.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svcClusterIP})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, es := range list.Items {
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				out = append(out, ep.Addresses...)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (r *run) checkEndpointSlices(ctx context.Context) error {
	want := func(without string) []string {
		var out []string
		for _, s := range r.servers {
			if s.name != without {
				out = append(out, s.ip)
			}
		}
		sort.Strings(out)
		return out
	}
	wait := func(w []string, what string) error {
		var have []string
		return retry(ctx, 15*time.Second, func(ctx context.Context) error {
			var err error
			if have, err = r.readyAddresses(ctx); err != nil {
				return err
			}
			if !slices.Equal(have, w) {
				return fmt.Errorf("%s: EndpointSlices of %s/%s hold ready %v, want %v (kube-controller-manager's endpointslice controller)", what, r.ns, svcClusterIP, have, w)
			}
			return nil
		})
	}
	if err := wait(want(""), "all pods ready"); err != nil {
		return err
	}
	last := r.servers[len(r.servers)-1]
	if err := r.setReady(ctx, last.name, false); err != nil {
		return err
	}
	err := wait(want(last.name), "pod "+last.name+" made unready")
	if rerr := r.setReady(ctx, last.name, true); rerr != nil {
		return errors.Join(err, rerr)
	}
	if err != nil {
		return err
	}
	return wait(want(""), "pod "+last.name+" ready again")
}

// checkNodePort: the NodePort Service answers on every node's internal
// address, from this workstation when it routes there, else from another
// node over SSH.
func (r *run) checkNodePort(ctx context.Context) error {
	start := time.Now()
	svc, err := r.cs.CoreV1().Services(r.ns).Get(ctx, svcNodePort, metav1.GetOptions{})
	if err != nil || len(svc.Spec.Ports) == 0 {
		return fmt.Errorf("service %s/%s: %v", r.ns, svcNodePort, err)
	}
	port := fmt.Sprint(svc.Spec.Ports[0].NodePort)
	each(r.o.Concurrency, r.members, func(m *member) {
		addr := net.JoinHostPort(m.inv.InternalIP(), port)
		var via string
		var dial func(context.Context, string, string) (net.Conn, error)
		if r.o.Workstation(ctx, m.inv.InternalIP()) {
			via = "this workstation"
			d := &net.Dialer{}
			dial = d.DialContext
		} else {
			for _, o := range r.reachable() {
				if o != m {
					via, dial = "node "+o.inv.Name+" over SSH", o.node.Dial
					break
				}
			}
		}
		if dial == nil {
			r.judge(m.inv.Name, GroupNodePort+".reach", start, fmt.Errorf("%s: not checked: this workstation does not route to it and no other node is reachable over SSH", addr), "")
			return
		}
		err := retry(ctx, 10*time.Second, func(ctx context.Context) error {
			got, err := fetch(ctx, dial, addr, "/hostname")
			if err == nil {
				err = r.answeredByServer(got)
			}
			return err
		})
		if err != nil {
			err = fmt.Errorf("Service %s/%s on %s from %s: %w (kube-proxy on %s)", r.ns, svcNodePort, addr, via, err, m.inv.Name)
		}
		r.judge(m.inv.Name, GroupNodePort+".reach", start, err, fmt.Sprintf("Service %s/%s answers on %s from %s", r.ns, svcNodePort, addr, via))
	})
	return nil
}

// checkDNS: from a pod on every node, the Service's full, namespace and
// short names, kubernetes.default and another pod's A record resolve.
func (r *run) checkDNS(ctx context.Context) error {
	type q struct {
		check, name string
		port        int
		request     string
		want        func(string) error
	}
	for i, s := range r.servers {
		other := r.servers[(i+1)%len(r.servers)]
		podName := strings.ReplaceAll(other.ip, ".", "-") + "." + r.ns + ".pod.cluster.local"
		qs := []q{
			{"dns.fqdn", r.fqdn(svcClusterIP), 80, "hostname", r.answeredByServer},
			{"dns.namespace", svcClusterIP + "." + r.ns, 80, "hostname", r.answeredByServer},
			{"dns.search", svcClusterIP, 80, "hostname", r.answeredByServer},
			// Plain HTTP to the API server's https port: any answer means the
			// name resolved and the Service took the connection.
			{"dns.kubernetes-default", "kubernetes.default", 443, "healthz", func(string) error { return nil }},
			{"dns.pod-record", podName, httpPort, "hostname", func(got string) error {
				if got != other.name {
					return fmt.Errorf("answered by %q, not pod %s", clip(got), other.name)
				}
				return nil
			}},
		}
		each(r.o.Concurrency, qs, func(q q) {
			t := time.Now()
			err := retry(ctx, 5*time.Second, func(ctx context.Context) error {
				got, err := r.dial(ctx, s.name, q.name, q.port, q.request)
				if err == nil {
					err = q.want(got)
				}
				return err
			})
			if err != nil {
				err = fmt.Errorf("%s from pod %s: %w (CoreDNS: kube-system/coredns, the pod's /etc/resolv.conf)", q.name, s.name, err)
			}
			r.judge(s.node, q.check, t, err, q.name+" resolves in pod "+s.name)
		})
	}
	return nil
}

// checkNetworkPolicy: default-deny-ingress blocks a client, an allow rule
// by label lets exactly that client in; default-deny-egress blocks DNS until
// an egress rule lets it out. Ingress and egress run side by side.
func (r *run) checkNetworkPolicy(ctx context.Context) error {
	target, okT := r.extra[podTarget]
	allowed, okA := r.extra[podAllowed]
	denied, okD := r.extra[podDenied]
	egress, okE := r.extra[podEgress]
	if !okT || !okA || !okD || !okE {
		return errors.New("the policy pods (np-target, np-allowed, np-denied, np-egress) are not all running: see pod-network.workload")
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.checkIngressPolicy(ctx, target, allowed, denied) })
	wg.Go(func() { r.checkEgressPolicy(ctx, egress) })
	wg.Wait()
	return nil
}

func (r *run) checkIngressPolicy(ctx context.Context, target, allowed, denied pod) {
	start := time.Now()
	reach := func(ctx context.Context, from pod) error {
		_, err := r.dial(ctx, from.name, target.ip, httpPort, "hostname")
		return err
	}
	pols := r.cs.NetworkingV1().NetworkPolicies(r.ns)
	const check = GroupNetworkPolicy + ".default-deny-ingress"
	if err := retry(ctx, 10*time.Second, func(ctx context.Context) error { return reach(ctx, denied) }); err != nil {
		r.judge(target.node, check, start, fmt.Errorf("pod %s cannot reach pod %s on %s even before any policy (see pod-network): %w", denied.name, target.name, target.node, err), "")
		return
	}
	if _, err := pols.Create(ctx, newDenyIngress(r.ns), metav1.CreateOptions{}); err != nil {
		r.judge(target.node, check, start, fmt.Errorf("create NetworkPolicy %s/%s: %w", r.ns, policyDenyIngress, err), "")
		return
	}
	if !blockedWithin(ctx, enforceWithin, func(ctx context.Context) bool { return reach(ctx, denied) != nil }) {
		r.judge(target.node, check, start, fmt.Errorf("%w: with NetworkPolicy %s/%s in place, pod %s (on %s) still reaches pod %s (on %s) after %s%s", ErrNotEnforced, r.ns, policyDenyIngress, denied.name, denied.node, target.name, target.node, enforceWithin, r.networkHint(ctx, target.node)), "")
		return
	}
	r.judge(target.node, check, start, nil, fmt.Sprintf("%s blocks pod %s (on %s) from pod %s", policyDenyIngress, denied.name, denied.node, target.name))

	const allow = GroupNetworkPolicy + ".allow-by-label"
	t := time.Now()
	if _, err := pols.Create(ctx, newAllowClient(r.ns), metav1.CreateOptions{}); err != nil {
		r.judge(target.node, allow, t, fmt.Errorf("create NetworkPolicy %s/%s: %w", r.ns, policyAllowClient, err), "")
		return
	}
	// The allowed client gets in (retried while the rule spreads) while the
	// other one stays out (one probe that waits out agnhost's 5 s), side by side.
	var allowedErr, deniedErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		allowedErr = retry(ctx, 20*time.Second, func(ctx context.Context) error { return reach(ctx, allowed) })
	})
	wg.Go(func() { deniedErr = reach(ctx, denied) })
	wg.Wait()
	if allowedErr != nil {
		r.judge(target.node, allow, t, fmt.Errorf("with NetworkPolicy %s/%s, pod %s (%s=allowed, on %s) still cannot reach pod %s: %w", r.ns, policyAllowClient, allowed.name, labelClient, allowed.node, target.name, allowedErr), "")
		return
	}
	if deniedErr == nil {
		r.judge(target.node, allow, t, fmt.Errorf("%w: with NetworkPolicy %s/%s, pod %s (without the label) reaches pod %s too%s", ErrNotEnforced, r.ns, policyAllowClient, denied.name, target.name, r.networkHint(ctx, target.node)), "")
		return
	}
	r.judge(target.node, allow, t, nil, fmt.Sprintf("%s lets pod %s in by its label on port %q, and pod %s stays out", policyAllowClient, allowed.name, portName, denied.name))
}

func (r *run) checkEgressPolicy(ctx context.Context, e pod) {
	start := time.Now()
	pols := r.cs.NetworkingV1().NetworkPolicies(r.ns)
	// A name with a final dot: one query, no search list (ndots:5 would try
	// four names, each waiting out the resolver's timeouts).
	name := r.fqdn(svcClusterIP) + "."
	lookup := func(ctx context.Context) error {
		_, err := r.dial(ctx, e.name, name, 80, "hostname")
		return err
	}
	const check = GroupNetworkPolicy + ".default-deny-egress"
	if err := retry(ctx, 10*time.Second, lookup); err != nil {
		r.judge(e.node, check, start, fmt.Errorf("pod %s cannot reach %s even before any policy (see dns, service): %w", e.name, name, err), "")
		return
	}
	if _, err := pols.Create(ctx, newDenyEgress(r.ns), metav1.CreateOptions{}); err != nil {
		r.judge(e.node, check, start, fmt.Errorf("create NetworkPolicy %s/%s: %w", r.ns, policyDenyEgress, err), "")
		return
	}
	if !blockedWithin(ctx, enforceWithin, func(ctx context.Context) bool { return errors.Is(lookup(ctx), ErrLookup) }) {
		r.judge(e.node, check, start, fmt.Errorf("%w: with NetworkPolicy %s/%s in place, pod %s (on %s) still resolves %s after %s%s", ErrNotEnforced, r.ns, policyDenyEgress, e.name, e.node, name, enforceWithin, r.networkHint(ctx, e.node)), "")
		return
	}
	if _, err := pols.Create(ctx, newAllowDNS(r.ns), metav1.CreateOptions{}); err != nil {
		r.judge(e.node, check, start, fmt.Errorf("create NetworkPolicy %s/%s: %w", r.ns, policyAllowDNS, err), "")
		return
	}
	var last error
	err := retry(ctx, 20*time.Second, func(ctx context.Context) error {
		last = lookup(ctx)
		if errors.Is(last, ErrLookup) {
			return last
		}
		return nil
	})
	switch {
	case err != nil:
		err = fmt.Errorf("with NetworkPolicy %s/%s (UDP and TCP 53 out), pod %s still cannot resolve %s: %w", r.ns, policyAllowDNS, e.name, name, err)
	case last == nil:
		err = fmt.Errorf("%w: with NetworkPolicy %s/%s (DNS only), pod %s also reaches %s on port 80%s", ErrNotEnforced, r.ns, policyAllowDNS, e.name, name, r.networkHint(ctx, e.node))
	}
	r.judge(e.node, check, start, err, fmt.Sprintf("%s blocks DNS from pod %s; %s lets DNS out and nothing else", policyDenyEgress, e.name, policyAllowDNS))
}

// networkHint says where to look when a policy is not enforced on node:
// the network the inventory selects, and for kube-router (the default),
// whether its DaemonSet exists and runs ready on that node.
func (r *run) networkHint(ctx context.Context, nodeName string) string {
	nw := r.o.Inventory.Network
	switch nw.PluginName() {
	case "":
		return fmt.Sprintf(" (the network is the inventory's network.manifest %s: does it implement NetworkPolicy?)", nw.Manifest)
	case inventory.PluginHostGW:
		return fmt.Sprintf(" (the inventory's network.plugin %s enforces none; %s does)", inventory.PluginHostGW, inventory.PluginKubeRouter)
	case inventory.PluginKubeRouter:
	default:
		return ""
	}
	const ns, name = metav1.NamespaceSystem, inventory.PluginKubeRouter
	if _, err := r.cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return fmt.Sprintf(" (DaemonSet %s/%s, the network that enforces policies, is missing: kbootstrap init applies it again)", ns, name)
	} else if err != nil {
		return ""
	}
	pods, err := r.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=" + name, FieldSelector: "spec.nodeName=" + nodeName})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == nodeName && podutils.IsPodReady(&p) {
			return ""
		}
	}
	return fmt.Sprintf(" (no ready pod of DaemonSet %s/%s on %s)", ns, name, nodeName)
}

// blockedWithin probes until blocked reports true (true) or d passes (false).
func blockedWithin(ctx context.Context, d time.Duration, blocked func(context.Context) bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if blocked(ctx) {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return false
}
