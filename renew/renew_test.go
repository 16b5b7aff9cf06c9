package renew

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHeartbeat(t *testing.T) {
	now := time.Unix(1_790_000_000, 0)
	for _, tc := range []struct {
		line string
		want time.Time
	}{
		{lockLine("abc", now), now},
		{"kbootstrap-certs-renew id=x host=h pid=1 heartbeat=12", time.Unix(12, 0)},
		{"garbage", time.Time{}},
		{"heartbeat=notanumber", time.Time{}},
	} {
		if got := heartbeat(tc.line); !got.Equal(tc.want) {
			t.Errorf("heartbeat(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
	if l := lockLine("abc", now); !strings.Contains(l, "id=abc ") || !strings.HasSuffix(l, "\n") {
		t.Errorf("lockLine = %q: the release and heartbeat match on %q", l, "id=abc ")
	}
}

func TestRunRefusesBadNames(t *testing.T) {
	for _, tc := range []struct {
		certs []string
		want  string
	}{
		{[]string{"kubelet.conf"}, "the kubelet rotates its own credentials"},
		{[]string{"apiserver", "nope"}, "--certs nope: not one of"},
	} {
		err := Run(context.Background(), Options{Certs: tc.certs})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(--certs %v) = %v, want %q", tc.certs, err, tc.want)
		}
	}
}

func TestKubeadmCmds(t *testing.T) {
	if got := strings.Join(Options{}.kubeadmCmds(), ";"); got != "kubeadm certs renew all" {
		t.Errorf("all: %q", got)
	}
	if got := strings.Join(Options{Certs: []string{"apiserver", "admin.conf"}}.kubeadmCmds(), ";"); got != "kubeadm certs renew apiserver;kubeadm certs renew admin.conf" {
		t.Errorf("named: %q", got)
	}
	o := Options{Certs: []string{"apiserver"}}
	if !o.wanted("apiserver") || o.wanted("etcd-server") || (Options{}).wanted("kubelet.conf") || (Options{}).wanted("ca") {
		t.Error("wanted: wrong selection")
	}
}

func TestPollTimesOut(t *testing.T) {
	o := Options{Timeout: 1500 * time.Millisecond}.withDefaults()
	calls := 0
	err := o.poll(context.Background(), "thing", func(context.Context) error { calls++; return errors.New("not yet") })
	if err == nil || !strings.Contains(err.Error(), "thing: not within 1.5s: not yet") || calls < 2 {
		t.Errorf("poll = %v after %d calls", err, calls)
	}
}

func TestHealthOrder(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{components, []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}},
		{[]string{"kube-scheduler", "kube-apiserver"}, []string{"kube-apiserver", "kube-scheduler"}},
	} {
		if got := healthOrder(tc.in); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("healthOrder(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if components[0] != "kube-controller-manager" {
		t.Error("healthOrder changed components")
	}
}
