package kubeadm

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kbootstrap/kbootstrap/node"
)

// The control plane's static pods, as kubeadm names their containers and
// manifests.
const (
	APIServer         = "kube-apiserver"
	Etcd              = "etcd"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	// Kubelet is no static pod; its health endpoint is in HealthURL.
	Kubelet = "kubelet"
)

// RunningContainers returns the IDs of the running containers of static pod
// component c (kubelet's container name), one per line ("" when none).
func RunningContainers(ctx context.Context, n node.Node, c string) (string, error) {
	// crictl when installed, else containerd's ctr (what prepare-node installs).
	res, err := n.Run(ctx, fmt.Sprintf(`if command -v crictl >/dev/null; then crictl ps -q --state running --name '^%[1]s$'; else
tasks=$(ctr -n k8s.io tasks ls)
for id in $(ctr -n k8s.io containers ls -q 'labels."io.kubernetes.container.name"==%[1]s'); do
  printf '%%s\n' "$tasks" | awk -v id="$id" '$1 == id && $3 == "RUNNING" { print id }'
done; fi`, c))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

// StopGrace is how long a component is given to end after SIGTERM before
// SIGKILL. etcd gets time to hand its leadership over; the API server
// closes its listener at once and then waits for open connections up to its
// request timeout (60 s, seen in the lab as 44 s of a dead API server):
// whoever stops it has drained it first, so what is still open is local and
// retries.
func StopGrace(c string) time.Duration {
	if c == Etcd {
		return 15 * time.Second
	}
	return 5 * time.Second
}

// StopContainer ends container id with SIGTERM, and SIGKILL after grace.
// The kubelet starts a new one as long as the pod's manifest is in place.
func StopContainer(ctx context.Context, n node.Node, id string, grace time.Duration) error {
	secs := int(grace.Seconds())
	// crictl stop does the same (SIGTERM, SIGKILL after --timeout); with
	// containerd's ctr alone (what prepare-node installs), by hand.
	_, err := n.Run(ctx, fmt.Sprintf(`id=%[1]s
if command -v crictl >/dev/null; then exec crictl stop --timeout %[2]d "$id" >/dev/null; fi
alive() { ctr -n k8s.io tasks ls | awk -v id="$id" '$1 == id && $3 == "RUNNING" { f=1 } END { exit !f }'; }
ctr -n k8s.io tasks kill "$id"
end=$(( $(date +%%s) + %[2]d ))
while alive && [ "$(date +%%s)" -lt "$end" ]; do sleep 0.2; done
alive || exit 0
ctr -n k8s.io tasks kill -s SIGKILL "$id"
end=$(( $(date +%%s) + 10 ))
while alive && [ "$(date +%%s)" -lt "$end" ]; do sleep 0.2; done
! alive`, node.ShellQuote(id), secs))
	return err
}

// StopRunning stops every running container of component c (SIGTERM,
// SIGKILL after StopGrace) and returns their IDs, one per line.
func StopRunning(ctx context.Context, n node.Node, c string) (string, error) {
	ids, err := RunningContainers(ctx, n, c)
	if err != nil {
		return "", err
	}
	for _, id := range strings.Fields(ids) {
		if err := StopContainer(ctx, n, id, StopGrace(c)); err != nil {
			return ids, fmt.Errorf("stopping %s's container %s: %w", c, id, err)
		}
	}
	return ids, nil
}

// Restart stops component c's running containers (SIGTERM, SIGKILL after
// StopGrace) and waits, through wait, until the kubelet runs a new one and
// healthy passes. The pod and its manifest stay as they are.
func Restart(ctx context.Context, n node.Node, c string, wait func(what string, f func(context.Context) error) error, healthy func(context.Context) error) error {
	old, err := StopRunning(ctx, n, c)
	if err != nil {
		return err
	}
	if err := wait(c+" running again", func(ctx context.Context) error {
		id, err := RunningContainers(ctx, n, c)
		if err == nil && (id == "" || slices.Contains(strings.Fields(old), id)) {
			err = errors.New("no new container yet")
		}
		return err
	}); err != nil {
		return err
	}
	return wait(c+" healthy", healthy)
}

// HealthURL is each component's health endpoint on the node's loopback.
var HealthURL = map[string]string{
	APIServer:         "https://127.0.0.1:6443/readyz",
	Etcd:              "http://127.0.0.1:2381/health",
	ControllerManager: "https://127.0.0.1:10257/healthz",
	Scheduler:         "https://127.0.0.1:10259/healthz",
	Kubelet:           "http://127.0.0.1:10248/healthz",
}

// Healthy asks component c's health endpoint through the node (for etcd:
// the member's own /health on its metrics port, which needs a leader).
func Healthy(ctx context.Context, n node.Node, c string) error {
	url, ok := HealthURL[c]
	if !ok {
		return fmt.Errorf("no health endpoint known for %q", c)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     func(ctx context.Context, network, addr string) (net.Conn, error) { return n.Dial(ctx, network, addr) },
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // health only; the certificates are checked apart
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	if c == Etcd && !bytes.Contains(body, []byte(`"health":"true"`)) {
		return fmt.Errorf("%s: %s", url, bytes.TrimSpace(body))
	}
	return nil
}
