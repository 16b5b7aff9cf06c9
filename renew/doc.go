// Package renew renews the certificates kubeadm made on the control planes,
// one control plane at a time, without ever leaving one half-renewed: a lock
// on the node (re-judged under it, so concurrent runs never renew a node
// twice), every etcd member healthy, a backup, `kubeadm certs renew`, a
// restart of the static pods that read the renewed files, one at a time,
// gated on their health, a check that the node serves the new certificates,
// and on any failure the backup restored and the run stopped. Run writes its
// outcome to a Prometheus textfile when asked.
//
// steps.go lists what happens to one control plane, as named steps in files
// by concern (lock, backup, rollback, drain, restart, health, verify). Every
// line goes through the run's progress.Status.
//
// Schedule installs the renewal on each control plane as a systemd timer (a
// cron entry without systemd) running `kbootstrap certs renew --local`,
// spaced so that control planes never renew together, through package
// nodetimer.
package renew
