// Package etcdcmd is `kbootstrap etcd`: flags, members, snapshot save,
// verify and schedule, and audit, each a thin adaptor over package etcd.
package etcdcmd
