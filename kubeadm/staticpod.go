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
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/internal/poll"
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

// RestartedAt is the annotation Restart sets on a static pod's manifest
// when the kubelet backs off restarting its container: when it restarted
// the pod, and what makes the restarted pod another pod.
const RestartedAt = "kbootstrap.io/restarted-at"

// restartPatience is how long Restart waits for the kubelet to start a
// stopped container again in the same pod before it makes the pod another
// one: without back-off the kubelet does within 2 s (its next relist).
const restartPatience = 5 * time.Second

// Restart restarts component c's static pod and waits, through wait, until
// the kubelet runs it again and healthy passes. Its running containers are
// stopped (SIGTERM, SIGKILL after StopGrace) and the kubelet starts a new
// one at once, unless it backs off: a container restarted less than 10
// minutes before waits 10 s, doubling to 5 min (a retried renewal, a
// rollback right after a restart). When no new container runs within
// restartPatience, Restart writes a new RestartedAt annotation into the
// manifest, which makes it another pod to the kubelet (a static pod's UID is
// a hash of its manifest, as with kubeadm's own new manifests), started
// without back-off once the kubelet's pod worker retries (10 to 15 s); then
// only a container of that new pod counts.
func Restart(ctx context.Context, n node.Node, c string, wait func(what string, f func(context.Context) error) error, healthy func(context.Context) error) error {
	old, err := RunningPods(ctx, n, c)
	if err != nil {
		return err
	}
	for id := range old {
		if err := StopContainer(ctx, n, id, StopGrace(c)); err != nil {
			// The kubelet may have ended and removed it meanwhile.
			if now, rerr := RunningPods(ctx, n, c); rerr != nil || now[id] != "" {
				return fmt.Errorf("stopping %s's container %s: %w", c, id, err)
			}
		}
	}
	oldPods := map[string]bool{}
	for _, uid := range old {
		oldPods[uid] = true
	}
	restarted := func(newPod bool) func(context.Context) error {
		return func(ctx context.Context) error {
			now, err := RunningPods(ctx, n, c)
			if err != nil {
				return err
			}
			for id, uid := range now {
				if (!newPod && old[id] == "") || !oldPods[uid] {
					return nil
				}
			}
			return errors.New("no new container running yet")
		}
	}
	err = poll.Until(ctx, restartPatience, 500*time.Millisecond, c+" running again", restarted(false))
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		if err := SetManifestAnnotation(ctx, n, c, RestartedAt, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return err
		}
		if err := wait(c+" running again as a new pod (the kubelet was backing off its restart)", restarted(true)); err != nil {
			return err
		}
	}
	return wait(c+" healthy", healthy)
}

// RunningPods returns the running containers of static pod component c
// (the kubelet's container name), each with its pod's UID.
func RunningPods(ctx context.Context, n node.Node, c string) (map[string]string, error) {
	// crictl when installed, else containerd's ctr (what prepare-node installs).
	res, err := n.Run(ctx, fmt.Sprintf(`if command -v crictl >/dev/null; then
  for id in $(crictl ps -q --state running --name '^%[1]s$'); do
    echo "$id $(crictl inspect -o go-template --template '{{ index .status.labels "io.kubernetes.pod.uid" }}' "$id")"
  done
  exit 0
fi
tasks=$(ctr -n k8s.io tasks ls)
for id in $(ctr -n k8s.io containers ls -q 'labels."io.kubernetes.container.name"==%[1]s'); do
  printf '%%s\n' "$tasks" | awk -v id="$id" '$1 == id && $3 == "RUNNING" { f = 1 } END { exit !f }' || continue
  echo "$id $(ctr -n k8s.io containers info "$id" | sed -n 's/^ *"io.kubernetes.pod.uid": "\([^"]*\)".*/\1/p' | head -n 1)"
done`, c))
	if err != nil {
		return nil, err
	}
	pods := map[string]string{}
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			pods[f[0]] = f[1]
		} else if len(f) == 1 {
			return nil, fmt.Errorf("%s's container %s: no pod UID label", c, f[0])
		}
	}
	return pods, nil
}

// SetManifestAnnotation sets annotation key to value in component c's
// static pod manifest, written back atomically with its mode (the
// temporary file's name starts with a dot: the kubelet skips it). The rest
// of the manifest is kept as it is, fields this module does not know too.
func SetManifestAnnotation(ctx context.Context, n node.Node, c, key, value string) error {
	p := Manifest(c)
	fi, err := n.Stat(ctx, p)
	if err != nil {
		return err
	}
	raw, err := n.ReadFile(ctx, p)
	if err != nil {
		return err
	}
	out, err := setAnnotation(raw, key, value)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return n.WriteFile(ctx, p, bytes.NewReader(out), node.WriteOptions{Mode: fi.Mode.Perm()})
}

// setAnnotation sets metadata.annotations[key] of the pod manifest raw.
func setAnnotation(raw []byte, key, value string) ([]byte, error) {
	var pod map[string]any
	if err := yaml.Unmarshal(raw, &pod); err != nil {
		return nil, err
	}
	if pod == nil || pod["kind"] != "Pod" {
		return nil, errors.New("field kind: not a Pod")
	}
	meta, ok := pod["metadata"].(map[string]any)
	if !ok {
		if pod["metadata"] != nil {
			return nil, errors.New("field metadata: not a mapping")
		}
		meta = map[string]any{}
		pod["metadata"] = meta
	}
	ann, ok := meta["annotations"].(map[string]any)
	if !ok {
		if meta["annotations"] != nil {
			return nil, errors.New("field metadata.annotations: not a mapping")
		}
		ann = map[string]any{}
		meta["annotations"] = ann
	}
	ann[key] = value
	return yaml.Marshal(pod)
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
