package verify

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// AgnhostImage is the image of verify's workload: agnhost, the test server
// Kubernetes' own e2e tests use (k8s.io/kubernetes/test/images/agnhost),
// at the version Kubernetes v1.34's e2e tests name. The lab builds it from
// that module and tags it so; an online cluster pulls it.
const AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.56"

// NamespacePrefix starts the name of every namespace verify creates.
const NamespacePrefix = "kbootstrap-verify-"

// Labels and names of the workload.
const (
	labelName     = "app.kubernetes.io/name"
	labelManaged  = "app.kubernetes.io/managed-by"
	labelRole     = "kbootstrap.io/verify-role"   // "server": behind the Services
	labelPod      = "kbootstrap.io/verify-pod"    // the pod's own name, for policies
	labelClient   = "kbootstrap.io/verify-client" // "allowed" on the one client a policy admits
	labelNode     = "kbootstrap.io/verify-node"   // the node a pod was placed on
	readinessGate = "kbootstrap.io/verify-ready"  // a pod is ready only when verify says so

	roleServer = "server"
	httpPort   = 8080
	portName   = "http"

	svcClusterIP = "kbv"
	svcHeadless  = "kbv-headless"
	svcNodePort  = "kbv-nodeport"
	svcExternal  = "kbv-external"

	podTarget  = "np-target"  // the pod the ingress policies select
	podAllowed = "np-allowed" // the client an allow rule admits by label
	podDenied  = "np-denied"  // a client no rule admits
	podEgress  = "np-egress"  // the pod the egress policies select

	policyDenyIngress = "default-deny-ingress"
	policyAllowClient = "allow-client-by-label"
	policyDenyEgress  = "default-deny-egress"
	policyAllowDNS    = "allow-dns-egress"
)

func labels(pod string, extra ...string) map[string]string {
	l := map[string]string{labelName: "kbootstrap-verify", labelManaged: "kbootstrap", labelPod: pod}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

func newNamespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name,
		Labels: map[string]string{labelName: "kbootstrap-verify", labelManaged: "kbootstrap"}}}
}

// newPod is an agnhost netexec pod bound to nodeName (no scheduler: every
// Ready node gets one, whatever its taints). A server carries the Services'
// label, the headless Service's subdomain and a readiness gate verify sets,
// so that verify can make it unready at will.
func newPod(ns, name, nodeName, image string, server bool, extraLabels ...string) *corev1.Pod {
	grace := int64(1)
	no := false
	nonRoot := true
	uid := int64(65534)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(name, append([]string{labelNode, nodeName}, extraLabels...)...)},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			TerminationGracePeriodSeconds: &grace,
			EnableServiceLinks:            &no,
			AutomountServiceAccountToken:  &no,
			Containers: []corev1.Container{{
				Name:            "agnhost",
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Args:            []string{"netexec", fmt.Sprintf("--http-port=%d", httpPort), "--udp-port=-1"},
				Ports:           []corev1.ContainerPort{{Name: portName, ContainerPort: httpPort, Protocol: corev1.ProtocolTCP}},
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: &uid, RunAsNonRoot: &nonRoot, AllowPrivilegeEscalation: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if name == podEgress {
		// A lookup that a policy drops fails after 1 s, not the resolver's
		// default 2 attempts of 5 s: the egress check waits for it twice.
		one := "1"
		p.Spec.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "timeout", Value: &one}, {Name: "attempts", Value: &one}}}
	}
	if server {
		p.Labels[labelRole] = roleServer
		p.Spec.Hostname = name
		p.Spec.Subdomain = svcHeadless
		p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: readinessGate}}
	}
	return p
}

func newServices(ns string) []*corev1.Service {
	sel := map[string]string{labelRole: roleServer}
	port := []corev1.ServicePort{{Name: portName, Port: 80, TargetPort: intstr.FromString(portName), Protocol: corev1.ProtocolTCP}}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{labelName: "kbootstrap-verify", labelManaged: "kbootstrap"}}
	}
	return []*corev1.Service{
		{ObjectMeta: meta(svcClusterIP), Spec: corev1.ServiceSpec{Selector: sel, Ports: port}},
		{ObjectMeta: meta(svcHeadless), Spec: corev1.ServiceSpec{Selector: sel, ClusterIP: corev1.ClusterIPNone,
			Ports: []corev1.ServicePort{{Name: portName, Port: httpPort, TargetPort: intstr.FromString(portName), Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: meta(svcNodePort), Spec: corev1.ServiceSpec{Selector: sel, Type: corev1.ServiceTypeNodePort, Ports: port}},
		{ObjectMeta: meta(svcExternal), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName,
			ExternalName: svcClusterIP + "." + ns + ".svc.cluster.local"}},
	}
}

func podSelector(pod string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: map[string]string{labelPod: pod}}
}

func policy(ns, name string, sel metav1.LabelSelector, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{labelName: "kbootstrap-verify", labelManaged: "kbootstrap"}},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types},
	}
}

// The policies a CKA writes: deny all ingress to a pod, then admit one
// client by its label on the named port; deny all egress of a pod, then let
// DNS out.
func newDenyIngress(ns string) *networkingv1.NetworkPolicy {
	return policy(ns, policyDenyIngress, podSelector(podTarget), networkingv1.PolicyTypeIngress)
}

func newAllowClient(ns string) *networkingv1.NetworkPolicy {
	p := policy(ns, policyAllowClient, podSelector(podTarget), networkingv1.PolicyTypeIngress)
	port := intstr.FromString(portName)
	tcp := corev1.ProtocolTCP
	p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{labelClient: "allowed"}}}},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
	}}
	return p
}

func newDenyEgress(ns string) *networkingv1.NetworkPolicy {
	return policy(ns, policyDenyEgress, podSelector(podEgress), networkingv1.PolicyTypeEgress)
}

func newAllowDNS(ns string) *networkingv1.NetworkPolicy {
	p := policy(ns, policyAllowDNS, podSelector(podEgress), networkingv1.PolicyTypeEgress)
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
	}}
	return p
}
