package node

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Redacted replaces a secret in logged text.
const Redacted = "[REDACTED]"

// RedactString replaces every non-empty secret in s, in each form it takes
// on the wire (wireForms).
func RedactString(s string, secrets []string) string {
	for _, sec := range secrets {
		for _, f := range wireForms(sec) {
			s = strings.ReplaceAll(s, f, Redacted)
		}
	}
	return s
}

// wireForms are the forms a secret takes in what kbootstrap sends and
// prints, longest first: inside a shell-quoted word (ShellQuote turns ' into
// '\”), and escaped in a Go or JSON string (%q, encoding/json), besides the
// secret itself.
func wireForms(sec string) []string {
	if sec == "" {
		return nil
	}
	forms := []string{sec}
	add := func(f string) {
		if f != "" && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	add(strings.ReplaceAll(sec, "'", `'\''`))
	if q := strconv.Quote(sec); len(q) > 2 {
		add(q[1 : len(q)-1])
	}
	if j, err := json.Marshal(sec); err == nil && len(j) > 2 {
		add(string(j[1 : len(j)-1]))
	}
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return forms
}

func loggedCmd(cmd string, o ExecOptions) string {
	if o.HideCmd {
		return "[sensitive command]"
	}
	return RedactString(cmd, o.Secrets)
}

func loggedOutput(b []byte, o ExecOptions) string {
	if o.HideOutput {
		return "[output hidden]"
	}
	return RedactString(string(b), o.Secrets)
}

// Redactor is a set of secrets shared by a run. Its Writer redacts them from
// everything written through it, line by line, so a secret is never split
// across two writes: use it in front of the log and the terminal.
type Redactor struct {
	mu sync.RWMutex
	// forms are the wire forms of every secret added, longest first:
	// computed once here, not on every line redacted.
	forms []string
}

// Add registers secrets (empty ones are ignored).
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		for _, f := range wireForms(s) {
			if !slices.Contains(r.forms, f) {
				r.forms = append(r.forms, f)
			}
		}
	}
	slices.SortStableFunc(r.forms, func(a, b string) int { return len(b) - len(a) })
}

// String redacts s.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, f := range r.forms {
		s = strings.ReplaceAll(s, f, Redacted)
	}
	return s
}

// Writer returns a writer that buffers until a newline and writes each
// complete line to w with the secrets redacted. Close (or Flush) writes what
// is left.
func (r *Redactor) Writer(w io.Writer) *LineWriter {
	return &LineWriter{w: w, transform: r.String, r: r}
}

// PrefixWriter returns a LineWriter that prefixes every line with prefix
// ("cp1: ") and redacts it through r (r may be nil).
func PrefixWriter(w io.Writer, prefix string, r *Redactor) *LineWriter {
	return &LineWriter{w: w, transform: func(s string) string { return prefix + r.String(s) }, r: r}
}

// maxLine is the longest line a LineWriter holds: a longer one is written
// in pieces of about this size, each on a line of its own, so output without
// newlines cannot grow its buffer without end.
const maxLine = 64 << 10

// longest is the length of the longest wire form of a secret.
func (r *Redactor) longest() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.forms) == 0 {
		return 0
	}
	return len(r.forms[0])
}

// safeCut moves a cut of b at position at so that no wire form of a secret
// spans it: to the start of a form that does, or past its end when it starts
// at 0. b must hold at least at+longest() bytes, so that every form that
// starts before at is whole in b. ok is false when no such cut was found
// (forms overlapping each other across it).
func (r *Redactor) safeCut(b []byte, at int) (cut int, ok bool) {
	if r == nil {
		return at, true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for range 16 {
		moved := false
		for _, f := range r.forms {
			lo := max(0, at-len(f)+1)
			i := bytes.Index(b[lo:], []byte(f))
			if i < 0 || lo+i >= at {
				continue
			}
			if start := lo + i; start > 0 {
				at = start
			} else {
				at = len(f)
			}
			moved = true
		}
		if !moved {
			return at, true
		}
	}
	return 0, false
}

// LineWriter writes whole lines, transformed, to an underlying writer. Lines
// of several LineWriters sharing one destination never interleave mid-line
// when the destination is a *SyncWriter.
type LineWriter struct {
	mu        sync.Mutex
	w         io.Writer
	buf       []byte
	transform func(string) string
	r         *Redactor // where secrets are cut around; may be nil
}

// Write implements io.Writer.
func (l *LineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		line := string(l.buf[:i])
		l.buf = l.buf[i+1:]
		if _, err := io.WriteString(l.w, l.transform(line)+"\n"); err != nil {
			return len(p), err
		}
	}
	// A line too long to hold is written in pieces, cut where no secret
	// spans the cut; once the buffer holds the longest secret beyond the cut
	// point, every secret that starts before it is whole.
	for len(l.buf) >= maxLine+l.r.longest() {
		piece := l.transform("") + Redacted + " [a line cut where a secret spans it]"
		cut, ok := l.r.safeCut(l.buf, maxLine)
		if ok {
			piece = l.transform(string(l.buf[:cut]))
		} else {
			cut = maxLine + l.r.longest()
		}
		l.buf = l.buf[cut:]
		if _, err := io.WriteString(l.w, piece+"\n"); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Flush writes a final incomplete line, if any.
func (l *LineWriter) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) == 0 {
		return nil
	}
	line := string(l.buf)
	l.buf = nil
	_, err := io.WriteString(l.w, l.transform(line)+"\n")
	return err
}

// Close flushes.
func (l *LineWriter) Close() error { return l.Flush() }

// SyncWriter serialises writes to w, so whole lines from many goroutines
// never interleave.
type SyncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewSyncWriter wraps w.
func NewSyncWriter(w io.Writer) *SyncWriter { return &SyncWriter{w: w} }

// Write implements io.Writer.
func (s *SyncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
