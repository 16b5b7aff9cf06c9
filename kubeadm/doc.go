// Package kubeadm is kubeadm's layout of a node, in one place: the paths of
// its configuration, PKI, kubeconfigs, static pod manifests and data
// directories, and the admin kubeconfig turned into one for the workstation
// (its server the control-plane endpoint). Every package that reads or
// changes a kubeadm node takes these names from here.
package kubeadm
