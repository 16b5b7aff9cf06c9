// Package bootstrap forms and grows kubeadm clusters over SSH: `kbootstrap
// init`, `join`, `join-command` and `reset`.
//
// A run is a list of named phases in the style of kubeadm's workflow and
// k0sctl's phases (facts, preflight, loadbalancer, init, join-control-planes,
// join-workers, network, kubeconfig). Facts about every node are gathered
// first (versions, whether it is a control plane or joined, the Node
// objects, swap, ports, clock skew), so that each phase decides from them
// what is left to do: running init again on a formed cluster changes nothing,
// and a node added to the inventory is joined. Each phase is a file of its
// own (phase_*.go); phases() in run.go lists them, and PhaseNames is derived
// from that list. Reset (reset.go) is kbootstrap's one reset.
//
// Secrets: the certificate key and the bootstrap tokens are generated here
// (crypto/rand), registered with the run's Redactor before any command runs,
// and only ever written into 0600 kubeadm configuration files on the nodes
// (removed after use), never on a command line.
package bootstrap
