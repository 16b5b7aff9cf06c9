//go:build tools

// Package tools pins etcd's server, the one binary build.sh compiles for the
// lab's previous Kubernetes minor (UPSTREAM_SET=previous): etcdctl and etcdutl
// v3.5.24, the version kubeadm v1.33 names, are not served by the module proxy.
package tools

import _ "go.etcd.io/etcd/server/v3"
