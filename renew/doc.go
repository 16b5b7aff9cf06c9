// Package renew renews the certificates kubeadm made on the control planes,
// one control plane at a time, without ever leaving one half-renewed: a lock
// on the node, a backup, `kubeadm certs renew`, a restart of the static pods
// one at a time gated on their health, a check that the node serves the new
// certificates, and on any failure the backup restored and the run stopped.
package renew
