package renew

import (
	"context"
	"fmt"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
	"github.com/kbootstrap/kbootstrap/pki"
)

// kubeletConfig is the part of the kubelet's configuration file the
// rotation check reads.
type kubeletConfig struct {
	RotateCertificates *bool `json:"rotateCertificates"`
}

// kubeletRotation checks, without renewing anything, that the kubelet
// rotates its own client certificate: kubelet.conf references a file (the
// kubelet's kubelet-client-current.pem) rather than embedding one, and the
// kubelet's configuration has rotateCertificates: true. It returns what it
// found and whether the certificate rotates.
func kubeletRotation(ctx context.Context, n node.Node) (string, bool, error) {
	raw, err := n.ReadFile(ctx, kubeadm.KubeletConf)
	if err != nil {
		return "", false, err
	}
	kc, err := pki.LoadKubeconfig(raw)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", kubeadm.KubeletConf, err)
	}
	cfgRaw, err := n.ReadFile(ctx, kubeadm.KubeletConfigFile)
	if err != nil {
		return "", false, err
	}
	var cfg kubeletConfig
	if err := yaml.Unmarshal(cfgRaw, &cfg); err != nil {
		return "", false, fmt.Errorf("%s: %w", kubeadm.KubeletConfigFile, err)
	}
	switch {
	case cfg.RotateCertificates == nil || !*cfg.RotateCertificates:
		return fmt.Sprintf("the kubelet does not rotate its client certificate (%s: rotateCertificates is not true): set it and restart the kubelet; kubeadm does not renew kubelet.conf", kubeadm.KubeletConfigFile), false, nil
	case kc.ClientCertFile == "":
		return "kubelet.conf embeds its client certificate: the kubelet has not rotated it yet (it points kubelet.conf at its kubelet-client-current.pem once it has)", false, nil
	}
	certRaw, err := n.ReadFile(ctx, kc.ClientCertFile)
	if err != nil {
		return "", false, err
	}
	certs, err := pki.LoadCertificate(certRaw)
	if err != nil || len(certs) == 0 {
		return "", false, fmt.Errorf("%s: %v", kc.ClientCertFile, err)
	}
	return fmt.Sprintf("the kubelet rotates its client certificate (%s, expires %s); not renewed here", kc.ClientCertFile, certs[0].NotAfter.UTC().Format(time.RFC3339)), true, nil
}
