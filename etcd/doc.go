// Package etcd reaches a cluster's etcd exactly as its kube-apiserver does, from
// the workstation and with nothing installed on the node.
//
// DiscoverFlags reads the kube-apiserver's --etcd-* flags from the running
// process (/proc/PID/cmdline, what `ps -ef` shows) or, when none runs, from the
// static pod manifest, and reports where the two differ. Connect builds an
// etcd v3 client whose gRPC connections are dialled through the node's SSH
// connection (node.Dialer), so the node's 127.0.0.1:2379 is reached without
// opening a port; the CA, certificate and key are read from the node into
// memory and never written to the workstation's disk. Every call carries a
// deadline and every error names the node.
//
// On top of the client: Members and Status (etcdctl member list / endpoint
// status), SaveSnapshot (a streamed, hashed, fsynced snapshot whose sha256
// trailer is checked before it is renamed into place, with numbered rotation),
// VerifySnapshot (the trailer plus a read-only bbolt pass computing what
// `etcdutl snapshot status` prints) and Audit (CIS 2.1-2.7 and the API
// server's etcd flags from the live processes, probes proving that etcd
// refuses anyone without a certificate from its own CA, and the list of
// certificates on the node that can act as etcd clients).
//
// ConnectAsAPIServer is the one way every workflow reaches etcd (joins,
// reset, renewal gates): the flags and credentials read again on each call.
// Health judges every member, Member.OfNode and RemoveNodeMembers find and
// remove a node's members, and ScheduleSnapshots installs verified snapshots
// on the control planes from a timer (package nodetimer).
package etcd
