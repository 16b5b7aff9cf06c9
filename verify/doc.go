// Package verify proves that a cluster works the way its users rely on: its
// nodes and kube-system pods, the pod network (every pod reaches every other
// node's pods without NAT, every node reaches them), Services (ClusterIP
// from pods and nodes, EndpointSlices following readiness, headless,
// ExternalName), NodePorts on every node, DNS names from a pod on every node,
// and NetworkPolicy enforcement (default deny, allow by label, egress).
//
// It runs an agnhost workload in a namespace of its own, drives the probes
// through the API server's pod proxy and over SSH from the nodes, and
// reports findings with stable check ids ("nodes.ready", "dns.search",
// "networkpolicy.default-deny-ingress", ...).
package verify
