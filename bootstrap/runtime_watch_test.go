package bootstrap

import (
	"strings"
	"testing"
)

func TestRuntimeFailure(t *testing.T) {
	const runc = `E1129 15:01:02.123456    1234 log.go:32] "RunPodSandbox from runtime service failed" err="rpc error: code = Unknown desc = failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: can't get final child's PID from pipe: EOF: unknown"`
	for _, tc := range []struct {
		name      string
		journal   string
		wantCount int
		wantMsg   string
	}{
		{"nothing", "", 0, ""},
		{"other errors only", `E1129 "Failed to get status for pod" err="not found"` + "\n" + `I1129 "Started kubelet"`, 0, ""},
		{"runc, three times", strings.Repeat(runc+` pod="kube-system/etcd-cp1" podUID="abc"`+"\n", 3), 3, "OCI runtime create failed: runc create failed: unable to start container process: can't get final child's PID from pipe: EOF: unknown"},
		{"runc message without OCI prefix", `E1129 "CreateContainer in sandbox failed" err="runc create failed: unable to apply cgroup configuration: \"x\"" pod="p"`, 1, `runc create failed: unable to apply cgroup configuration: "x"`},
	} {
		count, msg := runtimeFailure(tc.journal)
		if count != tc.wantCount || msg != tc.wantMsg {
			t.Errorf("%s: runtimeFailure = %d, %q; want %d, %q", tc.name, count, msg, tc.wantCount, tc.wantMsg)
		}
	}
	if s := kubeletJournalScript(1700000000); !strings.Contains(s, "--since @1700000000") || !strings.Contains(s, "-e 'runc create failed'") {
		t.Errorf("script: %s", s)
	}
}
