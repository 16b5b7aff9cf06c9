package upgrade

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/kbootstrap/kbootstrap/internal/golden"
	"github.com/kbootstrap/kbootstrap/node"
)

// TestParseSources: the per-minor Kubernetes repository of a
// sources.list, as kubernetes.io's instructions and prepare-node write it,
// and the lists that have none or two.
func TestParseSources(t *testing.T) {
	for _, c := range []struct {
		name, raw             string
		uri, base, minor, key string
		err                   string
	}{
		{name: "kubernetes.io", raw: "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\n",
			uri: "https://pkgs.k8s.io/core:/stable:/v1.33/deb/", base: "https://pkgs.k8s.io/core:/stable:", minor: "v1.33", key: "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"},
		{name: "prepare-node, a mirror, options", raw: "# mirror\ndeb [arch=amd64 signed-by=/etc/apt/keyrings/kubernetes.asc] http://10.0.0.1:8080/core:/stable:/v1.34/deb /\n",
			uri: "http://10.0.0.1:8080/core:/stable:/v1.34/deb", base: "http://10.0.0.1:8080/core:/stable:", minor: "v1.34", key: "/etc/apt/keyrings/kubernetes.asc"},
		{name: "no signed-by", raw: "deb https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /",
			uri: "https://pkgs.k8s.io/core:/stable:/v1.33/deb/", base: "https://pkgs.k8s.io/core:/stable:", minor: "v1.33"},
		{name: "the old repository", raw: "deb https://apt.kubernetes.io/ kubernetes-xenial main\n", err: "no deb line of a per-minor"},
		{name: "commented out", raw: "# deb https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\n", err: "no deb line"},
		{name: "two", raw: "deb https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\ndeb https://pkgs.k8s.io/core:/stable:/v1.34/deb/ /\n", err: "2 deb lines"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := parseSources(SourcesList, []byte(c.raw))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), SourcesList) {
					t.Fatalf("err %v, want one naming %s and %q", err, SourcesList, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.uri != c.uri || s.base != c.base || s.minor != c.minor || s.keyFile != c.key {
				t.Errorf("got uri %q base %q minor %q key %q", s.uri, s.base, s.minor, s.keyFile)
			}
			next := repoURI(s.base, minorOf("v1.35.0"))
			sw := string(s.switched([]byte(c.raw), next))
			if strings.Contains(sw, s.uri+" ") || !strings.Contains(sw, next) {
				t.Errorf("switched to %s:\n%s", next, sw)
			}
		})
	}
}

// TestKeyringBytes: an armored key is dearmored for a binary keyring
// (.gpg), kept for an armored one (.asc).
func TestKeyringBytes(t *testing.T) {
	raw := []byte("\x99\x01\x0dnot really a key")
	var armored bytes.Buffer
	w, err := armor.Encode(&armored, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	w.Close()
	for _, c := range []struct {
		file string
		key  []byte
		want []byte
	}{
		{"/etc/apt/keyrings/kubernetes-apt-keyring.gpg", armored.Bytes(), raw},
		{"/etc/apt/keyrings/kubernetes.asc", armored.Bytes(), armored.Bytes()},
		{"/etc/apt/keyrings/kubernetes-apt-keyring.gpg", raw, raw},
	} {
		got, err := keyringBytes(c.file, c.key)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("keyringBytes(%s, %d bytes): %q, %v; want %q", c.file, len(c.key), got, err, c.want)
		}
	}
	if _, err := keyringBytes("k.gpg", []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n-----END PGP PUBLIC KEY BLOCK-----\n")); err == nil || !strings.Contains(err.Error(), "k.gpg") {
		t.Errorf("a broken armor: %v, want an error naming k.gpg", err)
	}
}

// TestPackageScripts: what runs on a node to fetch, extract and install
// the packages (golden files; go test -update rewrites them).
func TestPackageScripts(t *testing.T) {
	want := []string{"kubeadm=1.34.4", "kubelet=1.34.4", "kubectl=1.34.4"}
	golden.Check(t, "fetch.sh", []byte(fetchScript(aptDir("v1.34.4", ""), "https://pkgs.k8s.io/core:/stable:/v1.34/deb/", aptDir("v1.34.4", "")+"/key.asc", want)+"\n"))
	golden.Check(t, "fetch-unsigned-by.sh", []byte(fetchScript(aptDir("v1.34.4", "-before"), "https://pkgs.k8s.io/core:/stable:/v1.33/deb/", "", []string{"kubeadm=1.33.13-1.1"})+"\n"))
	golden.Check(t, "extract.sh", []byte(extractScript(aptDir("v1.34.4", ""), stageDir("v1.34.4"))+"\n"))
	golden.Check(t, "install.sh", []byte(installScript(aptDir("v1.34.4", ""), "kubelet", "kubectl")+"\n"))
	golden.Check(t, "rollback.sh", []byte(rollbackScript(backupDir("v1.34.4"), "/etc/apt/keyrings/kubernetes-apt-keyring.gpg")+"\n"))
}

// aptNode answers readPackages: its kubernetes.list and dpkg's status.
type aptNode struct {
	node.Node
	list string // "": none
	dpkg string
}

func (a aptNode) ReadFile(_ context.Context, p string) ([]byte, error) {
	if p != SourcesList || a.list == "" {
		return nil, fs.ErrNotExist
	}
	return []byte(a.list), nil
}

func (a aptNode) Run(_ context.Context, cmd string, _ ...node.ExecOption) (node.Result, error) {
	if !strings.HasPrefix(cmd, "dpkg-query") {
		return node.Result{}, fmt.Errorf("unexpected %q", cmd)
	}
	return node.Result{Stdout: []byte(a.dpkg)}, nil
}

// TestReadPackages: a node is upgraded from packages only when its
// repository is a per-minor one and its three packages are installed, the
// kubelet's at the version the kubelet reports; else the refusal says to
// give --binaries.
func TestReadPackages(t *testing.T) {
	list := "deb [signed-by=/etc/apt/keyrings/kubernetes.asc] https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\n"
	all := "kubeadm installed 1.33.13-1.1\nkubectl installed 1.33.13-1.1\nkubelet installed 1.33.13-1.1\n"
	for _, c := range []struct {
		name string
		n    aptNode
		err  string
	}{
		{"packages", aptNode{list: list, dpkg: all}, ""},
		{"no repository", aptNode{dpkg: all}, SourcesList + ": file does not exist (installed without the Kubernetes apt repository? give --binaries DIR)"},
		{"kubelet removed", aptNode{list: list, dpkg: strings.Replace(all, "kubelet installed", "kubelet config-files", 1)}, "package kubelet is not installed"},
		{"kubelet replaced outside apt", aptNode{list: list, dpkg: strings.Replace(all, "kubelet installed 1.33.13", "kubelet installed 1.33.12", 1)}, "package kubelet is 1.33.12-1.1 but the kubelet reports v1.33.13"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &run{}
			tg := &target{n: c.n, kubelet: version.MustParseSemantic("v1.33.13")}
			p, err := r.readPackages(context.Background(), tg)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.src.minor != "v1.33" || p.installed["kubeadm"] != "1.33.13-1.1" || len(p.installed) != 3 {
				t.Errorf("got %+v", p)
			}
		})
	}
}
