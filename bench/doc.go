// Package bench holds kbootstrap's benchmarks against peers run in the same
// invocation (parallel-ssh, kubeadm, etcdctl, ansible). Each subdirectory has
// a run.sh that brings up what it needs in the lab and prints both times and
// their ratio.
package bench
