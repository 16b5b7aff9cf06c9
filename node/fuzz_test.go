package node

import "testing"

// FuzzParseStatLine: a stat line from a node parses or is refused.
func FuzzParseStatLine(f *testing.F) {
	f.Add("regular file|644|0|0|12|1700000000|/etc/x")
	f.Add("directory|40755|x|y|-1|z|")
	f.Fuzz(func(t *testing.T, line string) {
		_, _ = parseStatLine(line)
	})
}

// FuzzRedact: redaction never leaves a registered secret in its output.
func FuzzRedact(f *testing.F) {
	f.Add("s3cr3t", "token s3cr3t")
	f.Add("pa'ss", "echo 'pa'\\''ss'")
	f.Fuzz(func(t *testing.T, secret, text string) {
		if len(secret) < 4 {
			return
		}
		out := RedactString(text+secret+ShellQuote(secret), []string{secret})
		if contains(out, secret) {
			t.Fatalf("secret %q left in %q", secret, out)
		}
	})
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
