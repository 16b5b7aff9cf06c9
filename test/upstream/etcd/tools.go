//go:build tools

// Package tools pins the etcd main packages (each module root is one) that
// build.sh compiles, so that go.mod and go.sum stay complete under `go mod tidy`.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
