package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kbootstrap/kbootstrap/inventory"
)

func TestRedactorWriterRedactsSplitWrites(t *testing.T) {
	var r Redactor
	r.Add("s3cr3t-token", "")
	var out bytes.Buffer
	w := r.Writer(&out)
	// The secret arrives split across writes; line buffering still catches it.
	io.WriteString(w, "join --token s3cr")
	io.WriteString(w, "3t-token --x\nsecond line s3cr3t-token")
	w.Flush()
	got := out.String()
	if strings.Contains(got, "s3cr3t-token") {
		t.Fatalf("secret leaked: %q", got)
	}
	if got != "join --token [REDACTED] --x\nsecond line [REDACTED]\n" {
		t.Errorf("got %q", got)
	}
}

func TestSlogThroughRedactor(t *testing.T) {
	var r Redactor
	r.Add("abcdef0123456789")
	var out bytes.Buffer
	w := r.Writer(&out)
	log := slog.New(slog.NewTextHandler(w, nil))
	log.Info("uploading", "certificateKey", "abcdef0123456789")
	w.Flush()
	if strings.Contains(out.String(), "abcdef0123456789") || !strings.Contains(out.String(), Redacted) {
		t.Fatalf("log not redacted: %q", out.String())
	}
}

func TestRunRedactsCommandAndStderr(t *testing.T) {
	n := NewLocal("local", nil)
	secret := "tok-0123456789abcdef"
	_, err := n.Run(context.Background(), "echo using "+secret+" >&2; exit 3", Redact(secret))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.ExitCode != 3 {
		t.Fatalf("want ExitError 3, got %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("secret in error: %v", err)
	}
	if !strings.Contains(err.Error(), "using "+Redacted) {
		t.Errorf("stderr not kept: %v", err)
	}
	_, err = n.Run(context.Background(), "echo "+secret+"; exit 1", Sensitive(), HideOutput())
	if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "[sensitive command]") {
		t.Fatalf("sensitive: %v", err)
	}
}

func TestRunStreamsAndStdin(t *testing.T) {
	n := NewLocal("local", nil)
	var out bytes.Buffer
	res, err := n.Run(context.Background(), "tr a-z A-Z", StdinString("hello\n"), StreamStdout(PrefixWriter(&out, "local: ", nil)))
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "HELLO\n" || out.String() != "local: HELLO\n" {
		t.Fatalf("stdout %q stream %q", res.Stdout, out.String())
	}
}

func TestParallelBoundAndKeepsAllResults(t *testing.T) {
	var nodes []inventory.Node
	for i := range 25 {
		nodes = append(nodes, inventory.Node{Name: fmt.Sprintf("n%d", i)})
	}
	var cur, peak atomic.Int32
	boom := errors.New("boom")
	res, err := Parallel(context.Background(), nodes, 4, func(ctx context.Context, n inventory.Node) (string, error) {
		c := cur.Add(1)
		for {
			p := peak.Load()
			if c <= p || peak.CompareAndSwap(p, c) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		cur.Add(-1)
		if n.Name == "n3" || n.Name == "n17" {
			return "failed " + n.Name, boom
		}
		return "ok " + n.Name, nil
	})
	if p := peak.Load(); p > 4 || p < 2 {
		t.Errorf("peak concurrency %d, want 2..4", p)
	}
	for i, r := range res {
		if !strings.HasSuffix(r, fmt.Sprintf("n%d", i)) {
			t.Errorf("result %d = %q (order lost)", i, r)
		}
	}
	if !errors.Is(err, boom) {
		t.Fatalf("errors.Is(boom) false: %v", err)
	}
	nes := NodeErrors(err)
	if len(nes) != 2 || nes[0].Node != "n3" || nes[1].Node != "n17" {
		t.Fatalf("NodeErrors = %v", nes)
	}
	if !strings.Contains(err.Error(), "node n3: boom") {
		t.Errorf("error text %q", err)
	}
	// An error the failing layer already named is not named twice.
	named := &NodeError{Node: "cp2", Err: fmt.Errorf("node cp2: connect: %w", boom)}
	if got := named.Error(); got != "node cp2: connect: boom" || !errors.Is(named, boom) {
		t.Errorf("NodeError over a named error = %q", got)
	}
	if got := (&NodeError{Node: "cp2", Err: errors.New("node cp20: x")}).Error(); got != "node cp2: node cp20: x" {
		t.Errorf("NodeError over another node's error = %q", got)
	}
}

func TestRetryOnlyConnectionErrors(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantCalls int
	}{
		{"refused is retried", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, 3},
		{"eof in handshake is retried", fmt.Errorf("ssh: handshake failed: %w", io.EOF), 3},
		{"auth failure is not", errors.New("ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey]"), 1},
		{"changed host key is not", fmt.Errorf("ssh: handshake failed: %w", &HostKeyChangedError{Host: "h", Key: testKey(t)}), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			_, err := retry(context.Background(), func(context.Context) (int, error) {
				calls++
				if calls < 3 {
					return 0, tt.err
				}
				return 42, nil
			})
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d (err %v)", calls, tt.wantCalls, err)
			}
		})
	}
	// Retries stop at the deadline, keeping the cause.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := retry(ctx, func(context.Context) (int, error) {
		return 0, os.NewSyscallError("connect", syscall.ECONNREFUSED)
	})
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("retry ran %v past a 500ms deadline", d)
	}
}

func testKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHostKeys(t *testing.T) {
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	known, other := testKey(t), testKey(t)
	line := fmt.Sprintf("10.0.0.1 %s\n[10.0.0.2]:2222 %s\n", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(known))), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(known))))
	os.WriteFile(kh, []byte(line), 0o600)
	addr := &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 22}

	strict := newHostKeys(false)
	cb, err := strict.callback(kh)
	if err != nil {
		t.Fatal(err)
	}
	if err := cb("10.0.0.1:22", addr, known); err != nil {
		t.Errorf("known key refused: %v", err)
	}
	err = cb("10.0.0.1:22", addr, other)
	var changed *HostKeyChangedError
	if !errors.As(err, &changed) {
		t.Fatalf("changed key: %v", err)
	}
	if want := fmt.Sprintf("ssh-keygen -f %q -R %q", kh, "10.0.0.1"); !strings.Contains(err.Error(), want) {
		t.Errorf("changed-key error lacks %q: %v", want, err)
	}
	err = cb("10.0.0.2:2222", addr, other)
	if !errors.As(err, &changed) || !strings.Contains(err.Error(), `-R "[10.0.0.2]:2222"`) {
		t.Errorf("changed key on port 2222: %v", err)
	}
	var unknown *HostKeyUnknownError
	if err := cb("10.0.0.9:22", addr, other); !errors.As(err, &unknown) {
		t.Errorf("unknown key accepted without --accept-new-host-keys: %v", err)
	}

	tofu := newHostKeys(true)
	cb, _ = tofu.callback(kh)
	if err := cb("10.0.0.9:22", addr, other); err != nil {
		t.Fatalf("accept new: %v", err)
	}
	if err := cb("10.0.0.1:22", addr, other); !errors.As(err, &changed) {
		t.Errorf("--accept-new-host-keys replaced a changed key: %v", err)
	}
	data, _ := os.ReadFile(kh)
	if !strings.Contains(string(data), "10.0.0.9 ssh-ed25519 ") {
		t.Errorf("new key not appended: %s", data)
	}
	// A fresh run trusts the appended key.
	cb, _ = newHostKeys(false).callback(kh)
	if err := cb("10.0.0.9:22", addr, other); err != nil {
		t.Errorf("appended key not trusted on the next run: %v", err)
	}
	if got := newHostKeys(false).algorithms(kh, "10.0.0.1:22"); len(got) != 1 || got[0] != ssh.KeyAlgoED25519 {
		t.Errorf("algorithms = %v", got)
	}
	if got := newHostKeys(false).algorithms(kh, "10.9.9.9:22"); got != nil {
		t.Errorf("algorithms of unknown host = %v", got)
	}
}

// unprivileged is a Local that claims not to be root, so Sudo wraps it and
// the sudo code paths run for real (the test itself runs as root).
type unprivileged struct{ *Local }

func (unprivileged) Privileged() bool { return false }

func TestSudoFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: sudo -n must succeed without a password")
	}
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Skip("sudo is not installed (apt-get install sudo)")
	}
	ctx := context.Background()
	n := Sudo(unprivileged{NewLocal("local", nil)})
	if _, ok := n.(*sudoNode); !ok {
		t.Fatal("Sudo did not wrap")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "secret.key")
	if err := n.WriteFile(ctx, p, strings.NewReader("key material\n"), WriteOptions{Mode: 0o600, Chown: true, UID: 1234, GID: 5678}); err != nil {
		t.Fatal(err)
	}
	got, err := n.ReadFile(ctx, p)
	if err != nil || string(got) != "key material\n" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	fi, err := n.Stat(ctx, p)
	if err != nil || fi.Mode.Perm() != 0o600 || fi.UID != 1234 || fi.GID != 5678 || fi.Size != 13 || fi.Name != "secret.key" {
		t.Fatalf("Stat = %+v, %v", fi, err)
	}
	if _, err := n.Stat(ctx, filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat(missing) = %v, want ErrNotExist", err)
	}
	if _, err := n.ReadFile(ctx, filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v, want ErrNotExist", err)
	}
	if _, err := n.ReadDir(ctx, filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadDir(missing) = %v, want ErrNotExist", err)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o750)
	entries, err := n.ReadDir(ctx, dir)
	if err != nil || len(entries) != 2 {
		t.Fatalf("ReadDir = %+v, %v", entries, err)
	}
	for _, e := range entries {
		if e.Name == "sub" && (!e.IsDir() || e.Mode.Perm() != 0o750) {
			t.Errorf("sub: %+v", e)
		}
	}
	// A short stream (the connection dropped mid-write) never replaces p.
	sn := n.(*sudoNode)
	err = sn.WriteFile(ctx, p, io.MultiReader(strings.NewReader("partial"), errReader{}), WriteOptions{})
	if err == nil {
		t.Fatal("write of a failing reader succeeded")
	}
	if got, _ := os.ReadFile(p); string(got) != "key material\n" {
		t.Errorf("destination changed by a failed write: %q", got)
	}
	// The stream ends early (connection closed): the size check refuses it.
	err = sn.WriteFile(ctx, p, shortReader{strings.NewReader("partial")}, WriteOptions{})
	if err == nil || !strings.Contains(err.Error(), "short write") {
		t.Fatalf("short stream: %v", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "key material\n" {
		t.Errorf("destination changed by a short write: %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("temporary file left behind: %v", entries)
	}
	if err := n.Remove(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Remove left %s", p)
	}
}

// shortReader claims more bytes than it holds, as a stream cut short does.
type shortReader struct{ *strings.Reader }

func (s shortReader) Len() int { return s.Reader.Len() + 100 }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection lost") }

func TestLocalWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	n := NewLocal("local", nil)
	ctx := context.Background()
	if err := n.WriteFile(ctx, p, strings.NewReader("one"), WriteOptions{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	if err := n.WriteFile(ctx, p, io.MultiReader(strings.NewReader("tw"), errReader{}), WriteOptions{}); err == nil {
		t.Fatal("failing write succeeded")
	}
	got, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(got) != "one" || fi.Mode().Perm() != 0o640 {
		t.Errorf("content %q mode %v", got, fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left: %v", entries)
	}
}

func TestParseStatLine(t *testing.T) {
	fi, err := parseStatLine("1234 81a4 0 0 1700000000 /etc/kubernetes/pki/ca crt")
	if err != nil || fi.Size != 1234 || fi.Mode != 0o644 || fi.Name != "ca crt" {
		t.Errorf("%+v %v", fi, err)
	}
	fi, _ = parseStatLine("4096 41ed 0 0 1700000000 /etc")
	if !fi.IsDir() || fi.Mode.Perm() != 0o755 {
		t.Errorf("dir: %+v", fi)
	}
	if _, err := parseStatLine("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"": "''", "abc": "abc", "a b": "'a b'", "it's": `'it'\''s'`, "/etc/x.conf": "/etc/x.conf"} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(`a'b"c $HOME`)).Output()
	if err != nil || string(out) != `a'b"c $HOME` {
		t.Errorf("round trip: %q %v", out, err)
	}
}

// TestRedactWireForms: a secret is redacted in every form it takes on the
// wire: as given, shell-quoted (a ' becomes '\”), and Go/JSON-escaped
// (security review, finding 6).
func TestRedactWireForms(t *testing.T) {
	for _, tc := range []struct{ secret, text string }{
		{"s3cr3t", "token s3cr3t refused"},
		{"pa'ss", "echo " + ShellQuote("pa'ss") + " | tee"},
		{"it's a \"quote\"", "printf %s " + ShellQuote("it's a \"quote\"")},
		{"tab\there", `{"value":"tab\there"}`},
		{"back\\slash", `msg="back\\slash"`},
	} {
		r := &Redactor{}
		r.Add(tc.secret)
		got := r.String(tc.text)
		if !strings.Contains(got, Redacted) {
			t.Errorf("secret %q in %q: not redacted: %q", tc.secret, tc.text, got)
		}
		for _, part := range strings.FieldsFunc(tc.secret, func(c rune) bool { return c == '\'' || c == '"' || c == '\t' || c == '\\' || c == ' ' }) {
			if len(part) >= 3 && strings.Contains(got, part) {
				t.Errorf("secret %q in %q: %q left in %q", tc.secret, tc.text, part, got)
			}
		}
		if got := RedactString(tc.text, []string{tc.secret}); !strings.Contains(got, Redacted) {
			t.Errorf("RedactString(%q): not redacted: %q", tc.text, got)
		}
	}
}

// TestSudoWriteNeverIntoADirectory: a directory planted at the destination
// (by a local user, before kbootstrap writes there as root) makes the write
// fail; root's file never lands inside it, where its owner could swap it
// (security review, finding 1).
func TestSudoWriteNeverIntoADirectory(t *testing.T) {
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Skip("sudo is not installed (test/prereqs.sh installs it)")
	}
	if err := exec.Command("sudo", "-n", "true").Run(); err != nil {
		t.Skip("sudo -n does not work for this user")
	}
	dir := t.TempDir()
	dest := filepath.Join(dir, "kbootstrap-image-x")
	if err := os.Mkdir(dest, 0o777); err != nil {
		t.Fatal(err)
	}
	s := &sudoNode{inner: NewLocal("local", nil)}
	err := s.WriteFile(context.Background(), dest, strings.NewReader("image"), WriteOptions{Mode: 0o600})
	if err == nil {
		t.Errorf("writing over a directory succeeded")
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 0 {
		t.Errorf("root's file landed inside the planted directory: %v", ents)
	}
	// A regular destination is still written, and replaced.
	file := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := s.WriteFile(context.Background(), file, strings.NewReader(content), WriteOptions{Mode: 0o640}); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(file); string(b) != content {
			t.Errorf("content %q, want %q", b, content)
		}
	}
}
