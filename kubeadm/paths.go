package kubeadm

// Where kubeadm keeps a node's files (kubeadm's defaults, as kubeadm v1.34
// writes them; certificatesDir can be changed, and pki reads the real one
// from the kube-apiserver manifest when it matters).
const (
	// KubernetesDir holds the kubeconfigs, pki/ and manifests/.
	KubernetesDir = "/etc/kubernetes"
	// PKIDir is kubeadm's certificatesDir.
	PKIDir = KubernetesDir + "/pki"
	// ManifestsDir holds the static pod manifests the kubelet runs.
	ManifestsDir = KubernetesDir + "/manifests"
	// TmpDir is where kubeadm upgrade leaves its backups.
	TmpDir = KubernetesDir + "/tmp"

	AdminConf             = KubernetesDir + "/admin.conf"
	SuperAdminConf        = KubernetesDir + "/super-admin.conf"
	KubeletConf           = KubernetesDir + "/kubelet.conf"
	ControllerManagerConf = KubernetesDir + "/controller-manager.conf"
	SchedulerConf         = KubernetesDir + "/scheduler.conf"

	CACert = PKIDir + "/ca.crt"
	CAKey  = PKIDir + "/ca.key"
	// The kube-apiserver's etcd client credentials and etcd's CA.
	EtcdCACert              = PKIDir + "/etcd/ca.crt"
	APIServerEtcdClientCert = PKIDir + "/apiserver-etcd-client.crt"
	APIServerEtcdClientKey  = PKIDir + "/apiserver-etcd-client.key"

	APIServerManifest         = ManifestsDir + "/kube-apiserver.yaml"
	EtcdManifest              = ManifestsDir + "/etcd.yaml"
	ControllerManagerManifest = ManifestsDir + "/kube-controller-manager.yaml"
	SchedulerManifest         = ManifestsDir + "/kube-scheduler.yaml"

	// EtcdDataDir is the stacked etcd member's data directory.
	EtcdDataDir = "/var/lib/etcd"
	// KubeletDir is the kubelet's root directory; KubeletConfigFile the
	// KubeletConfiguration kubeadm writes there.
	KubeletDir        = "/var/lib/kubelet"
	KubeletConfigFile = KubeletDir + "/config.yaml"
	// KubeletPKIDir holds the kubelet's serving certificate (kubelet.crt,
	// or kubelet-server-current.pem with serverTLSBootstrap).
	KubeletPKIDir = KubeletDir + "/pki"

	// APIServerPort is where kubeadm's API servers listen (and the
	// load balancer kbootstrap installs).
	APIServerPort = "6443"
	// LocalEtcd is the stacked etcd member's client URL on its node.
	LocalEtcd = "https://127.0.0.1:2379"
)

// Manifest is the static pod manifest of a control-plane component
// (kube-apiserver, etcd, kube-controller-manager, kube-scheduler).
func Manifest(component string) string { return ManifestsDir + "/" + component + ".yaml" }
