package renew

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"k8s.io/client-go/util/cert"

	"github.com/kbootstrap/kbootstrap/kubeadm"
	"github.com/kbootstrap/kbootstrap/node"
)

// filesNode is a node whose files are a map; only ReadFile is used.
type filesNode struct {
	node.Node
	files map[string]string
}

func (f filesNode) Name() string { return "cp1" }

func (f filesNode) ReadFile(_ context.Context, p string) ([]byte, error) {
	s, ok := f.files[p]
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return []byte(s), nil
}

func TestKubeletRotation(t *testing.T) {
	certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey("cp1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	const pem = "/var/lib/kubelet/pki/kubelet-client-current.pem"
	rotating := `apiVersion: v1
kind: Config
clusters:
- name: k
  cluster: {server: "https://10.0.0.1:6443", certificate-authority-data: ` + b64(certPEM) + `}
users:
- name: system:node:cp1
  user: {client-certificate: ` + pem + `, client-key: ` + pem + `}
contexts:
- name: c
  context: {cluster: k, user: system:node:cp1}
current-context: c
`
	embedded := strings.Replace(rotating, "client-certificate: "+pem+", client-key: "+pem, "client-certificate-data: "+b64(certPEM)+", client-key-data: "+b64(keyPEM), 1)
	for _, tc := range []struct {
		name, kubeletConf, config string
		ok                        bool
		want                      string
	}{
		{"rotating", rotating, "rotateCertificates: true\n", true, "the kubelet rotates its client certificate (" + pem + ", expires "},
		{"rotation off", rotating, "rotateCertificates: false\n", false, "rotateCertificates is not true"},
		{"rotation unset", rotating, "kind: KubeletConfiguration\n", false, "rotateCertificates is not true"},
		{"embedded", embedded, "rotateCertificates: true\n", false, "embeds its client certificate"},
	} {
		n := filesNode{files: map[string]string{
			kubeadm.KubeletConf: tc.kubeletConf, kubeadm.KubeletConfigFile: tc.config, pem: string(certPEM) + string(keyPEM),
		}}
		msg, ok, err := kubeletRotation(context.Background(), n)
		if err != nil || ok != tc.ok || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: kubeletRotation = %q, %v, %v; want %q, %v", tc.name, msg, ok, err, tc.want, tc.ok)
		}
	}
	_, _, err = kubeletRotation(context.Background(), filesNode{files: map[string]string{}})
	if err == nil {
		t.Error("no kubelet.conf: no error")
	}
}
