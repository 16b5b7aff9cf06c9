// Package upgrade takes a kubeadm cluster to the next Kubernetes minor (or
// a newer patch of its own), one node at a time, as the Kubernetes docs'
// "Upgrading kubeadm clusters" does by hand:
//
//   - preflight, before any change: the version skew policy (one minor at a
//     time, no downgrade, kubelets never newer than the API servers), every
//     node reachable and Ready, etcd healthy with every member, no
//     certificate expiring within a day, the new kubeadm, kubelet and kubectl
//     staged on every node and answering the target version (uploaded from
//     a directory, or fetched as packages from the node's per-minor
//     Kubernetes apt repository switched to the target's minor, with the
//     running packages for the way back: packages.go), and `kubeadm
//     upgrade plan` accepted by the first control plane's new kubeadm;
//   - a verified etcd snapshot on this machine;
//   - control planes one at a time: `kubeadm upgrade apply` on the first,
//     `kubeadm upgrade node` on the others, the API server drained from the
//     load balancer around it (apidrain), then the kubelet and kubectl
//     replaced and the kubelet restarted; gated on its static pods at the
//     new version and healthy, its etcd member healthy and its Node Ready at
//     the new version;
//   - workers in batches: cordoned, drained through the eviction API
//     (PodDisruptionBudgets honoured), `kubeadm upgrade node`, the new
//     kubelet, Ready at the new version, uncordoned.
//
// Every node's binaries (and packages, repository and keyring) and kubelet
// configuration are copied aside before its first change (/var/lib/kbootstrap/upgrade/before-<version>); a node
// that fails is put back from that copy (kubeadm itself puts back the static
// pods of a failed `upgrade apply|node`), uncordoned and serving, and the run
// stops there. What is upgraded is read from the nodes each time, so a run
// after an interruption or a failure finishes the job, and a run on an
// upgraded cluster changes nothing.
package upgrade
