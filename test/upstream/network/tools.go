//go:build tools

// Package tools pins the pod network's main package that images.sh compiles
// (kube-router: routes between the nodes' pod CIDRs and NetworkPolicy, with
// iptables and ipset), so that go.mod and go.sum stay complete under `go mod
// tidy`.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
