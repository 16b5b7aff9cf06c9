// Package etcdcmd is `kbootstrap etcd`: flags, members, snapshot save and
// verify, and audit, each a thin adaptor over package etcd.
package etcdcmd
