package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"text/template"
)

// KubeRouterImage is the pod network's image: kube-router, tagged as its
// upstream manifests name the repository (docker.io/cloudnativelabs/kube-router),
// at the version kbootstrap is tested with. The lab builds it from its Go
// module; an online cluster pulls it.
const KubeRouterImage = "docker.io/cloudnativelabs/kube-router:v2.1.0"

// KubeRouterCNIConfigPath is the CNI configuration kbootstrap writes on each
// node for kube-router (whose upstream manifest has an init container with a
// shell copy it; kube-router itself keeps the podCIDR in it).
const KubeRouterCNIConfigPath = "/etc/cni/net.d/10-kuberouter.conflist"

// KubeRouterCNIConfig is kube-router's bridge + host-local network for one
// node's pod CIDR: the bridge kube-bridge, no masquerade by the bridge
// (kube-router masquerades pod traffic leaving the cluster), host ports. The
// pod CIDR is in the "ranges" form kube-router itself writes when it adds
// the MTU at its start (see kubeRouterCNICurrent).
func KubeRouterCNIConfig(cidr string) []byte {
	return fmt.Appendf(nil, `{
  "cniVersion": "0.3.0",
  "name": "kubernetes",
  "plugins": [
    {"name": "kubernetes", "type": "bridge", "bridge": "kube-bridge", "isDefaultGateway": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
`, cidr)
}

// kubeRouterCNICurrent reports whether a node's CNI configuration have is
// kube-router's for cidr: kube-router rewrites the file at each start (its
// own JSON layout, the MTU of the node's interface added), so it is judged
// by what kbootstrap decides, the bridge and the pod CIDR, and not byte for
// byte (which would rewrite it on every init).
func kubeRouterCNICurrent(have []byte, cidr string) bool {
	var conf struct {
		Plugins []struct {
			Type, Bridge string
			IPAM         struct {
				Type   string
				Subnet string
				Ranges [][]struct{ Subnet string }
			}
		}
	}
	if err := json.Unmarshal(have, &conf); err != nil || len(conf.Plugins) == 0 {
		return false
	}
	b := conf.Plugins[0]
	if b.Type != "bridge" || b.Bridge != "kube-bridge" || b.IPAM.Type != "host-local" {
		return false
	}
	var subnets []string
	if b.IPAM.Subnet != "" {
		subnets = append(subnets, b.IPAM.Subnet)
	}
	for _, r := range b.IPAM.Ranges {
		for _, s := range r {
			subnets = append(subnets, s.Subnet)
		}
	}
	return slices.Equal(subnets, []string{cidr})
}

// KubeRouterNoNATRule is the iptables nat POSTROUTING rule (without
// -I/-C) kbootstrap puts first on each node of a kube-router network: pod to
// pod traffic is never masqueraded, whatever kube-router's set of pod
// subnets holds. kube-router v2.1.0 masquerades pod traffic to anything not
// in its set kube-router-pod-subnets, and its policy controller restores
// every ipset from its own snapshot at each sync, so a node's pod CIDR that
// its routing controller added after that snapshot is dropped again until
// the next routing sync (upstream issues #1732, #1918): after a join, the
// older nodes' pods reached the new node's pods under their node's address
// on and off. Packets kube-proxy marked for masquerading (0x4000: a pod
// reaching itself through a Service) still go to kube-proxy's rule. Not
// kept across a reboot, and not needed then: a restarted kube-router's
// policy controller starts with no snapshot of that set.
func KubeRouterNoNATRule(podSubnet string) string {
	return fmt.Sprintf("-s %[1]s -d %[1]s -m mark ! --mark 0x4000/0x4000 -m comment --comment kbootstrap-pod-no-nat -j RETURN", podSubnet)
}

var kubeRouterManifest = template.Must(template.New("kube-router").Parse(`apiVersion: v1
kind: ServiceAccount
metadata:
  name: kube-router
  namespace: kube-system
  labels: {app.kubernetes.io/managed-by: kbootstrap}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: kube-router
  labels: {app.kubernetes.io/managed-by: kbootstrap}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [list, get, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, get, watch]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
- apiGroups: [""]
  resources: [services/status]
  verbs: [update]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kube-router
  labels: {app.kubernetes.io/managed-by: kbootstrap}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-router}
subjects:
- {kind: ServiceAccount, name: kube-router, namespace: kube-system}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kube-router
  namespace: kube-system
  labels: {k8s-app: kube-router, tier: node, app.kubernetes.io/managed-by: kbootstrap}
spec:
  selector:
    matchLabels: {k8s-app: kube-router, tier: node}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata:
      labels: {k8s-app: kube-router, tier: node}
    spec:
      priorityClassName: system-node-critical
      serviceAccountName: kube-router
      hostNetwork: true
      hostPID: true
      tolerations:
      - {operator: Exists, effect: NoSchedule}
      - {operator: Exists, effect: NoExecute}
      - {key: CriticalAddonsOnly, operator: Exists}
      containers:
      - name: kube-router
        image: {{ .Image }}
        imagePullPolicy: IfNotPresent
        args:
        - --run-router=true
        - --run-firewall=true
        - --run-service-proxy=false
        - --bgp-graceful-restart=true
        - --routes-sync-period=15s
        env:
        - name: NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - {name: KUBE_ROUTER_CNI_CONF_FILE, value: {{ .CNIConfig }}}
        livenessProbe:
          httpGet: {path: /healthz, port: 20244}
          initialDelaySeconds: 10
          periodSeconds: 3
        resources:
          requests: {cpu: 100m, memory: 100Mi}
        securityContext: {privileged: true}
        volumeMounts:
        - {name: lib-modules, mountPath: /lib/modules, readOnly: true}
        - {name: cni-conf-dir, mountPath: /etc/cni/net.d}
        - {name: xtables-lock, mountPath: /run/xtables.lock}
      volumes:
      - name: lib-modules
        hostPath: {path: /lib/modules, type: DirectoryOrCreate}
      - name: cni-conf-dir
        hostPath: {path: /etc/cni/net.d}
      - name: xtables-lock
        hostPath: {path: /run/xtables.lock, type: FileOrCreate}
`))

// KubeRouterManifest is what init applies for the kube-router network: its
// ServiceAccount and RBAC (upstream's), and the DaemonSet of upstream's
// kubeadm manifest (router and firewall; kube-proxy stays the service
// proxy), without the init container (kbootstrap writes the CNI
// configuration), with the in-cluster credentials of its ServiceAccount and
// a periodic sync of 15 s instead of 5 min (kube-router adds a new node's
// address and pod CIDR to the sets it does not masquerade to only then).
func KubeRouterManifest(image string) []byte {
	var b bytes.Buffer
	if err := kubeRouterManifest.Execute(&b, struct{ Image, CNIConfig string }{image, KubeRouterCNIConfigPath}); err != nil {
		panic(err) // the template and its data are fixed
	}
	return b.Bytes()
}
