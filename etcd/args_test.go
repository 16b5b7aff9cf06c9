package etcd

import (
	"reflect"
	"strings"
	"testing"
)

func TestClientFlagsFromArgs(t *testing.T) {
	tests := []struct {
		name string
		argv []string
		want ClientFlags
	}{
		{
			name: "kubeadm equals form",
			argv: []string{"kube-apiserver", "--advertise-address=10.77.0.11", "--allow-privileged=true",
				"--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt", "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
				"--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key", "--etcd-servers=https://127.0.0.1:2379"},
			want: ClientFlags{Endpoints: []string{"https://127.0.0.1:2379"}, CACert: "/etc/kubernetes/pki/etcd/ca.crt",
				Cert: "/etc/kubernetes/pki/apiserver-etcd-client.crt", Key: "/etc/kubernetes/pki/apiserver-etcd-client.key", Prefix: "/registry"},
		},
		{
			name: "space form and bool flags before",
			argv: []string{"/usr/local/bin/kube-apiserver", "--allow-privileged", "--etcd-servers", "https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379",
				"--profiling", "--etcd-cafile", "/pki/ca.crt", "--etcd-certfile", "/pki/c.crt", "--etcd-keyfile", "/pki/c.key", "--etcd-prefix", "/custom"},
			want: ClientFlags{Endpoints: []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"},
				CACert: "/pki/ca.crt", Cert: "/pki/c.crt", Key: "/pki/c.key", Prefix: "/custom"},
		},
		{
			name: "IPv6 and last value wins",
			argv: []string{"kube-apiserver", "--etcd-servers=https://[fd00::1]:2379", "--etcd-servers=https://[::1]:2379, https://[fd00::2]:2379",
				"-etcd-cafile=/a", "--etcd-certfile=/b", "--etcd-keyfile=/c"},
			want: ClientFlags{Endpoints: []string{"https://[::1]:2379", "https://[fd00::2]:2379"}, CACert: "/a", Cert: "/b", Key: "/c", Prefix: "/registry"},
		},
		{
			name: "external etcd, no program name",
			argv: []string{"--etcd-servers=https://etcd-0.example.org:2379,https://etcd-1.example.org:2379", "--etcd-cafile=/e/ca.pem",
				"--etcd-certfile=/e/client.pem", "--etcd-keyfile=/e/client-key.pem"},
			want: ClientFlags{Endpoints: []string{"https://etcd-0.example.org:2379", "https://etcd-1.example.org:2379"}, CACert: "/e/ca.pem",
				Cert: "/e/client.pem", Key: "/e/client-key.pem", Prefix: "/registry"},
		},
		{
			name: "value that starts with a dash is not a flag",
			argv: []string{"kube-apiserver", "--v", "-1", "--etcd-servers", "https://127.0.0.1:2379"},
			want: ClientFlags{Endpoints: []string{"https://127.0.0.1:2379"}, Prefix: "/registry"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ClientFlagsFromArgs(ParseAPIServerArgs(tt.argv))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseEtcdArgsBool(t *testing.T) {
	a := ParseEtcdArgs([]string{"etcd", "--client-cert-auth", "--name", "cp1", "--peer-client-cert-auth=false", "--auto-tls=true"})
	if v, ok := a.Bool("client-cert-auth", false); !ok || !v {
		t.Errorf("client-cert-auth = %v %v", v, ok)
	}
	if v, _ := a.Bool("peer-client-cert-auth", true); v {
		t.Error("peer-client-cert-auth should be false")
	}
	if v, _ := a.Bool("auto-tls", false); !v {
		t.Error("auto-tls should be true")
	}
	if a.String("name") != "cp1" {
		t.Errorf("name = %q", a.String("name"))
	}
	if v, ok := a.Bool("peer-auto-tls", false); !ok || v {
		t.Error("absent bool must be its default")
	}
}

func TestSplitCmdline(t *testing.T) {
	got := SplitCmdline([]byte("kube-apiserver\x00--etcd-servers=https://[::1]:2379\x00--x\x00\x00"))
	want := []string{"kube-apiserver", "--etcd-servers=https://[::1]:2379", "--x", ""}
	// A trailing empty argument is indistinguishable from the terminator:
	// trimmed like ps does.
	want = want[:3]
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
	if SplitCmdline(nil) != nil {
		t.Error("empty cmdline (kernel thread, zombie) must give nil")
	}
}

const apiServerManifest = `apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.77.0.11:6443
  labels: {component: kube-apiserver, tier: control-plane}
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.77.0.11
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt
    - --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt
    - --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key
    - --etcd-servers=https://127.0.0.1:2379
    args: ["--etcd-prefix", "/k8s"]
    image: registry.k8s.io/kube-apiserver:v1.34.4
    name: kube-apiserver
  hostNetwork: true
status: {}
`

func TestManifestCommand(t *testing.T) {
	argv, _, err := ManifestCommand([]byte(apiServerManifest), "kube-apiserver")
	if err != nil {
		t.Fatal(err)
	}
	f := ClientFlagsFromArgs(ParseAPIServerArgs(argv))
	want := ClientFlags{Endpoints: []string{"https://127.0.0.1:2379"}, CACert: "/etc/kubernetes/pki/etcd/ca.crt",
		Cert: "/etc/kubernetes/pki/apiserver-etcd-client.crt", Key: "/etc/kubernetes/pki/apiserver-etcd-client.key", Prefix: "/k8s"}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got %+v want %+v", f, want)
	}
	for _, bad := range []string{"kind: Deployment\n", "spec: {containers: []}\n", "::", "spec: {containers: [{name: a}, {name: b}]}"} {
		if _, _, err := ManifestCommand([]byte(bad), "kube-apiserver"); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
}

func TestDifferences(t *testing.T) {
	proc := ParseAPIServerArgs([]string{"kube-apiserver", "--etcd-servers=https://127.0.0.1:2379", "--etcd-cafile=/a", "--etcd-certfile=/b", "--etcd-keyfile=/c"})
	same := ParseAPIServerArgs([]string{"kube-apiserver", "--etcd-servers", "https://127.0.0.1:2379", "--etcd-cafile=/a", "--etcd-certfile=/b", "--etcd-keyfile=/c", "--v=2"})
	if d := Differences(proc, same); len(d) != 0 {
		t.Errorf("equal flags in different forms: %q", d)
	}
	edited := ParseAPIServerArgs([]string{"kube-apiserver", "--etcd-servers=https://127.0.0.1:2379,https://10.0.0.2:2379", "--etcd-cafile=/a", "--etcd-certfile=/b", "--etcd-keyfile=/c", "--etcd-prefix=/x"})
	d := Differences(proc, edited)
	if len(d) != 2 || !strings.HasPrefix(d[0], "--etcd-servers:") || !strings.HasPrefix(d[1], "--etcd-prefix:") {
		t.Errorf("got %q", d)
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in                   string
		hostPort, serverName string
		err                  bool
	}{
		{"https://127.0.0.1:2379", "127.0.0.1:2379", "127.0.0.1", false},
		{"https://[::1]:2379", "[::1]:2379", "::1", false},
		{"https://[fd00::11]", "[fd00::11]:2379", "fd00::11", false},
		{"etcd-0.example.org:2379", "etcd-0.example.org:2379", "etcd-0.example.org", false},
		{"http://10.0.0.1:2379", "10.0.0.1:2379", "10.0.0.1", false},
		{"unix:///var/run/etcd.sock", "", "", true},
		{"https://:2379", "", "", true},
	}
	for _, tt := range tests {
		e, err := ParseEndpoint(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("%s: err %v", tt.in, err)
			continue
		}
		if e.HostPort != tt.hostPort || e.ServerName != tt.serverName {
			t.Errorf("%s: got %s %s", tt.in, e.HostPort, e.ServerName)
		}
	}
}

func TestEtcdEffectiveArgs(t *testing.T) {
	cmd := ParseEtcdArgs([]string{"etcd", "--cert-file=/s.crt"})
	e, err := EtcdEffectiveArgs(cmd, map[string]string{"ETCD_CERT_FILE": "/ignored", "ETCD_CLIENT_CERT_AUTH": "false", "PATH": "/bin"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.String("cert-file") != "/s.crt" || e.String("client-cert-auth") != "false" || e.Has("path") {
		t.Errorf("got %v", e.Values)
	}
	cfg := []byte("name: cp1\nlisten-client-urls: https://127.0.0.1:2379\nclient-transport-security:\n  cert-file: /c.crt\n  client-cert-auth: true\npeer-transport-security:\n  auto-tls: true\n")
	e, err = EtcdEffectiveArgs(ParseEtcdArgs([]string{"etcd", "--config-file=/x.yaml", "--client-cert-auth"}), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e.String("cert-file") != "/c.crt" || e.String("client-cert-auth") != "true" || e.String("peer-auto-tls") != "true" || e.String("listen-client-urls") != "https://127.0.0.1:2379" {
		t.Errorf("config file: %v", e.Values)
	}
	if _, err := EtcdEffectiveArgs(ParseEtcdArgs([]string{"etcd", "--config-file=/x.yaml"}), nil, nil); err == nil {
		t.Error("unreadable config file must be an error")
	}
}

func TestEtcdctlCommand(t *testing.T) {
	f := ClientFlags{Endpoints: []string{"https://127.0.0.1:2379", "https://[::1]:2379"}, CACert: "/p/ca.crt", Cert: "/p/c.crt", Key: "/p/my key"}
	got := f.EtcdctlCommand("member", "list")
	want := "etcdctl '--endpoints=https://127.0.0.1:2379,https://[::1]:2379' --cacert=/p/ca.crt --cert=/p/c.crt '--key=/p/my key' member list"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add([]byte("kube-apiserver\x00--etcd-servers=https://[::1]:2379\x00--etcd-cafile\x00/a"))
	f.Add([]byte("--\x00-\x00--=\x00-=x\x00---a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		argv := SplitCmdline(b)
		a := ParseAPIServerArgs(argv)
		n := len(a.Positional)
		for _, vs := range a.Values {
			n += len(vs)
		}
		if n > len(argv) {
			t.Fatalf("more values (%d) than arguments (%d)", n, len(argv))
		}
		for _, name := range a.Order {
			if len(a.Values[name]) == 0 {
				t.Fatalf("flag %q ordered without a value", name)
			}
		}
		f := ClientFlagsFromArgs(a)
		_ = f.Validate()
		_ = f.EtcdctlCommand("member", "list")
	})
}

func FuzzManifestCommand(f *testing.F) {
	f.Add([]byte(apiServerManifest))
	f.Add([]byte("spec: {containers: [{name: etcd, command: [etcd, --name=x]}]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		argv, _, err := ManifestCommand(b, "kube-apiserver")
		if err == nil && len(argv) == 0 {
			t.Fatal("no error and no command")
		}
		if err == nil {
			ParseEtcdArgs(argv)
		}
		ConfigFileArgs(b)
	})
}
