package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// alive reports whether pid runs (a zombie waiting for its reaper does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	return !strings.HasPrefix(s[strings.LastIndex(s, ")")+1:], " Z")
}

// waitPidFile waits for a command to write its child's pid to file.
func waitPidFile(t *testing.T, file string) int {
	t.Helper()
	for range 200 {
		if b, err := os.ReadFile(file); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the command never started its child")
	return 0
}

// TestLocalCancelKillsChildren: cancelling a Local command ends the
// processes it started, not only /bin/sh.
func TestLocalCancelKillsChildren(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    func() Node
	}{
		{"local", func() Node { return NewLocal("local", nil) }},
		{"local through sudo", func() Node {
			if os.Geteuid() != 0 {
				t.Skip("needs root: sudo -n must succeed without a password")
			}
			if _, err := exec.LookPath("sudo"); err != nil {
				t.Skip("sudo is not installed (apt-get install sudo)")
			}
			return Sudo(unprivileged{NewLocal("local", nil)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n()
			pidFile := filepath.Join(t.TempDir(), "pid")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				// The child ignores SIGTERM and SIGHUP, and its own group.
				_, err := n.Run(ctx, "trap '' TERM HUP; (sleep 300; echo never) & echo $! > "+ShellQuote(pidFile)+"; wait")
				done <- err
			}()
			pid := waitPidFile(t, pidFile)
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("a cancelled command returned no error")
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
			for deadline := time.Now().Add(2 * time.Second); alive(pid) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			if alive(pid) {
				exec.Command("kill", "-KILL", strconv.Itoa(pid)).Run()
				t.Fatalf("the command's child %d still runs after Run returned", pid)
			}
			t.Logf("returned and child gone %s after cancel", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestKillScriptEndsMarkedSession: the script that ends a cancelled SSH
// command kills every process of the marked command's session — here a
// child that moved to a process group of its own, as sudo's does — and
// nothing else.
func TestKillScriptEndsMarkedSession(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid (util-linux) is not installed")
	}
	dir := t.TempDir()
	token := newRunToken()
	// setsid stands in for sshd, which runs each command as a session leader.
	marked := exec.Command("setsid", "/bin/sh", "-c", markedCmd("(set -m; sleep 300 & echo $! > "+ShellQuote(dir+"/child")+"; wait); echo never", token))
	if err := marked.Start(); err != nil {
		t.Fatal(err)
	}
	defer marked.Process.Kill()
	other := exec.Command("setsid", "/bin/sh", "-c", markedCmd("sleep 300", newRunToken()))
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	child := waitPidFile(t, dir+"/child")
	if out, err := exec.Command("/bin/sh", "-c", killScript(token)).CombinedOutput(); err != nil {
		t.Fatalf("kill script: %v\n%s", err, out)
	}
	marked.Wait()
	for deadline := time.Now().Add(2 * time.Second); alive(child) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(child) {
		exec.Command("kill", "-KILL", strconv.Itoa(child)).Run()
		t.Error("the marked command's child survived the kill script")
	}
	if !alive(other.Process.Pid) {
		t.Error("the kill script killed another command")
	}
}

// TestMarkedCmdKeepsExitStatusAndStdin: the mark changes neither what the
// command reads nor how it exits.
func TestMarkedCmdKeepsExitStatusAndStdin(t *testing.T) {
	for _, tc := range []struct {
		cmd, stdin, out string
		code            int
	}{
		{"cat", "in\n", "in\n", 0},
		{"exit 7", "", "", 7},
		{"false", "", "", 1},
		{"echo a; exit 3", "", "a\n", 3},
		{"read x; echo \"$x\" # comment", "line\n", "line\n", 0},
		{"cat <<EOF\nheredoc\nEOF", "", "heredoc\n", 0},
	} {
		c := exec.Command("/bin/sh", "-c", markedCmd(tc.cmd, "0123abcd"))
		c.Stdin = strings.NewReader(tc.stdin)
		out, err := c.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if string(out) != tc.out || code != tc.code {
			t.Errorf("%q: out %q exit %d, want %q exit %d", tc.cmd, out, code, tc.out, tc.code)
		}
	}
}
