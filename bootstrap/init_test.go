package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/kbootstrap/kbootstrap/progress"

	"github.com/kbootstrap/kbootstrap/node"
)

// kubeadmStderr is what kubeadm v1.34 printed when kubeadm init stopped in
// upload-config (a CI run whose load balancer did not pass requests for a
// minute).
const kubeadmStderr = `[WARNING SystemVerification]: cgroups v1 support is in maintenance mode, please migrate to cgroups v2
error: error execution phase upload-config/kubeadm: could not bootstrap the admin user in file admin.conf: unable to create ClusterRoleBinding: client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline
To see the stack trace of this error execute with --v=5 or higher
`

func exitErr(stderr string) error {
	return fmt.Errorf("node cp1: kubeadm init: %w", &node.ExitError{Node: "cp1", Cmd: "kubeadm init", ExitCode: 1, Stderr: stderr})
}

func TestResumableInitPhase(t *testing.T) {
	for _, tc := range []struct {
		err        error
		phase      string
		found, res bool
	}{
		{exitErr(kubeadmStderr), "upload-config/kubeadm", true, true},
		{exitErr("error execution phase upload-certs: error uploading certs: ..."), "upload-certs", true, true},
		{exitErr("error execution phase addon/coredns: unable to create a new DNS service"), "addon/coredns", true, true},
		{exitErr("error execution phase bootstrap-token: error creating bootstrap token"), "bootstrap-token", true, true},
		{exitErr("error execution phase wait-control-plane: could not initialize a Kubernetes cluster"), "wait-control-plane", true, false},
		{exitErr("error execution phase preflight: [preflight] Some fatal errors occurred:\n\t[ERROR Port-6443]: Port 6443 is in use"), "preflight", true, false},
		{exitErr("error execution phase kubelet-start: error writing CRISocket"), "kubelet-start", true, false},
		{exitErr("error execution phase control-plane/apiserver: failed"), "control-plane/apiserver", true, false},
		{exitErr("unknown flag: --upload-cert"), "", false, false},
		{errors.New("error execution phase upload-config: not from kubeadm's stderr"), "", false, false},
	} {
		phase, ok := failedInitPhase(tc.err)
		if phase != tc.phase || ok != tc.found {
			t.Errorf("failedInitPhase(%v) = %q, %v; want %q, %v", tc.err, phase, ok, tc.phase, tc.found)
			continue
		}
		if ok && resumableInitPhase(phase) != tc.res {
			t.Errorf("resumableInitPhase(%q) = %v, want %v", phase, !tc.res, tc.res)
		}
	}
}

// scriptNode answers Run with the errors of script, one per call, and
// records the commands; it has no other use here.
type scriptNode struct {
	node.Node
	script []error
	cmds   []string
}

func (n *scriptNode) Run(_ context.Context, cmd string, _ ...node.ExecOption) (node.Result, error) {
	n.cmds = append(n.cmds, cmd)
	if len(n.script) == 0 {
		return node.Result{}, nil
	}
	err := n.script[0]
	n.script = n.script[1:]
	return node.Result{}, err
}

func TestKubeadmInitResumes(t *testing.T) {
	const full = "kubeadm init --config /etc/kbootstrap/kubeadm-init.yaml --upload-certs"
	const resume = full + " --skip-phases preflight,certs,kubeconfig,etcd,control-plane,kubelet-start"
	stopped := exitErr(kubeadmStderr)
	early := exitErr("error execution phase wait-control-plane: could not initialize a Kubernetes cluster")
	for _, tc := range []struct {
		name   string
		resume bool
		script []error
		want   []string
		err    error
		lines  int // "• node cp1: kubeadm init stopped" lines
	}{
		{"succeeds", false, nil, []string{full}, nil, 0},
		{"stopped once", false, []error{stopped}, []string{full, resume}, nil, 1},
		{"stopped thrice", false, []error{stopped, stopped, stopped}, []string{full, resume, resume}, stopped, 2},
		{"control plane never came up", false, []error{early}, []string{full}, early, 0},
		{"resumed from the facts", true, nil, []string{resume}, nil, 0},
		{"resumed from the facts, stopped again", true, []error{stopped}, []string{resume, resume}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &scriptNode{script: tc.script}
			var out bytes.Buffer
			c := &run{opts: Options{Status: progress.NewStatus(&out, false, nil), Redactor: &node.Redactor{}},
				nodes: map[string]node.Node{"cp1": n}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			err := c.kubeadmInit(context.Background(), "cp1", tc.resume)
			if !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
			if tc.err != nil {
				var ee *node.ExitError
				if !errors.As(err, &ee) {
					t.Errorf("the error %v carries no *node.ExitError", err)
				}
			}
			if strings.Join(n.cmds, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(n.cmds, "\n"), strings.Join(tc.want, "\n"))
			}
			if got := strings.Count(out.String(), "• node cp1: kubeadm init stopped in phase upload-config/kubeadm, after the control plane came up"); got != tc.lines {
				t.Errorf("%d resume lines, want %d:\n%s", got, tc.lines, out.String())
			}
		})
	}
}

// TestPhaseNames: --skip-phases takes these names, derived from the phases.
func TestPhaseNames(t *testing.T) {
	want := []string{"loadbalancer", "init", "join-control-planes", "join-workers", "network", "kubeconfig"}
	if strings.Join(PhaseNames, ",") != strings.Join(want, ",") {
		t.Errorf("PhaseNames = %v, want %v", PhaseNames, want)
	}
}
