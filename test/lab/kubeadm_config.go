package lab

import "fmt"

// KubeadmInitConfig is the kubeadm configuration the lab's own tests (the
// lab proof, and the e2e tests that run kubeadm by hand) init a node with:
// the containerd socket, images only from the node, the cgroupfs driver of
// the lab's containerd, no swap check, and kube-proxy leaving the host's
// conntrack table size alone. certKey "" leaves certificateKey out.
func KubeadmInitConfig(node, address, endpoint, certKey string) string {
	key := ""
	if certKey != "" {
		key = "certificateKey: " + certKey + "\n"
	}
	return fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
%slocalAPIEndpoint:
  advertiseAddress: %s
  bindPort: 6443
nodeRegistration:
  name: %s
  criSocket: unix:///run/containerd/containerd.sock
  imagePullPolicy: Never
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: %s
controlPlaneEndpoint: %s
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
`, key, address, node, KubernetesVersion, endpoint)
}
