package kubeadm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kbootstrap/kbootstrap/node"
)

// NodeReady reports whether n's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ReadyHeartbeat is when n's kubelet last posted its Ready condition (zero
// without one): a Ready condition posted after a kubelet restart is the new
// kubelet's word, not the one it stopped with.
func ReadyHeartbeat(n *corev1.Node) time.Time {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.LastHeartbeatTime.Time
		}
	}
	return time.Time{}
}

// ReadySince says why n is not Ready by a status its kubelet posted after
// heartbeat (the Ready heartbeat noted before the kubelet's restart), or
// nil: a restarted kubelet's Node is Ready by its predecessor's stale
// status until the new kubelet posts its own.
func ReadySince(n *corev1.Node, heartbeat time.Time) error {
	if !NodeReady(n) {
		return errors.New("not Ready")
	}
	if !ReadyHeartbeat(n).After(heartbeat) {
		return fmt.Errorf("Ready only by the status posted at %s, before its kubelet's restart", heartbeat.Format(time.RFC3339))
	}
	return nil
}

// AdminClient is a client of the API server at server (https://host:port, as
// seen from n: usually n's own API server) with admin.conf's credentials. The
// credentials are read from n into memory and never written on this machine;
// every connection is dialled through n (an SSH tunnel), so the workstation
// needs no route to the cluster. n must be privileged (admin.conf is 0600).
func AdminClient(ctx context.Context, n node.Node, server string) (kubernetes.Interface, error) {
	raw, err := n.ReadFile(ctx, AdminConf)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name(), err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("node %s: %s: %w", n.Name(), AdminConf, err)
	}
	cfg.Host = server
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return n.Dial(ctx, network, addr)
	}
	// Requests fail on their own context; this bounds one that has none.
	cfg.Timeout = 30 * time.Second
	cfg.QPS, cfg.Burst = 100, 200
	cfg.UserAgent = "kbootstrap"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name(), err)
	}
	return cs, nil
}
