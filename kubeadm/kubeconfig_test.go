package kubeadm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/node"
)

const adminConf = `apiVersion: v1
kind: Config
clusters:
- cluster: {certificate-authority-data: Y2E=, server: "https://10.0.0.11:6443"}
  name: lab
contexts:
- context: {cluster: lab, user: kubernetes-admin}
  name: kubernetes-admin@lab
current-context: kubernetes-admin@lab
users:
- name: kubernetes-admin
  user: {client-certificate-data: Y2VydA==, client-key-data: a2V5}
`

func TestWriteAdminKubeconfig(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, KubernetesDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, AdminConf), []byte(adminConf), 0o600); err != nil {
		t.Fatal(err)
	}
	n := rooted{Local: node.NewLocal("cp1", nil), root: root}
	out := filepath.Join(t.TempDir(), "lab.kubeconfig")
	for i, want := range []bool{true, false} {
		wrote, err := WriteAdminKubeconfig(context.Background(), n, "10.0.0.9:6443", out)
		if err != nil || wrote != want {
			t.Fatalf("write %d: wrote %v, %v; want wrote %v", i+1, wrote, err, want)
		}
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), "server: https://10.0.0.9:6443") || strings.Contains(string(b), "10.0.0.11") {
		t.Errorf("kubeconfig:\n%s", b)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if _, err := AdminKubeconfig([]byte("{not yaml"), "x:1"); err == nil {
		t.Error("a broken admin.conf: no error")
	}
}

// rooted reads the node's files under root.
type rooted struct {
	*node.Local
	root string
}

func (r rooted) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return r.Local.ReadFile(ctx, filepath.Join(r.root, p))
}
