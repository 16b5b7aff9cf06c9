package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Status prints one line per node and step: "✓ Joining control plane cp2
// (41.2s)" or "✗ ...: error". On a terminal the steps under way are shown on
// a spinner line that the finished lines scroll above. It is also an
// io.Writer for whole lines (streamed command output), safe for concurrent
// use.
type Status struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	r       Redactor
	active  []*Step
	frame   int
	drawn   bool
	stop    chan struct{}
	stopped sync.Once
}

// Redactor masks secrets in what is printed (node.Redactor is one).
type Redactor interface{ String(string) string }

// NewStatus writes to w, redacted through r (may be nil); tty turns on the
// spinner.
func NewStatus(w io.Writer, tty bool, r Redactor) *Status {
	s := &Status{w: w, tty: tty, r: r, stop: make(chan struct{})}
	if tty {
		go s.spin()
	}
	return s
}

// Close stops the spinner.
func (s *Status) Close() {
	if s == nil {
		return
	}
	s.stopped.Do(func() {
		close(s.stop)
		s.mu.Lock()
		s.clear()
		s.mu.Unlock()
	})
}

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (s *Status) spin() {
	t := time.NewTicker(120 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			s.frame++
			s.draw()
			s.mu.Unlock()
		}
	}
}

// clear erases the spinner line (mu held).
func (s *Status) clear() {
	if s.drawn {
		fmt.Fprint(s.w, "\r\033[K")
		s.drawn = false
	}
}

// draw shows the steps under way (mu held).
func (s *Status) draw() {
	if !s.tty || len(s.active) == 0 {
		return
	}
	var titles []string
	for _, st := range s.active {
		titles = append(titles, st.title)
	}
	line := spinnerFrames[s.frame%len(spinnerFrames)] + " " + strings.Join(titles, ", ")
	fmt.Fprint(s.w, "\r\033[K"+line)
	s.drawn = true
}

// Write prints whole lines above the spinner.
func (s *Status) Write(p []byte) (int, error) {
	if s == nil {
		return len(p), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clear()
	_, err := io.WriteString(s.w, s.redact(string(p)))
	s.draw()
	return len(p), err
}

func (s *Status) redact(v string) string {
	if s.r == nil {
		return v
	}
	return s.r.String(v)
}

// Printf prints one line.
func (s *Status) Printf(format string, args ...any) {
	if s == nil {
		return
	}
	s.Write([]byte(fmt.Sprintf(format, args...) + "\n"))
}

// Step is one step under way.
type Step struct {
	s     *Status
	title string
	start time.Time
	done  bool
}

// Start begins a step; End it.
func (s *Status) Start(title string) *Step {
	st := &Step{s: s, title: title, start: time.Now()}
	if s == nil {
		return st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = append(s.active, st)
	s.draw()
	return st
}

// SetTitle changes the title the step's line will end with.
func (st *Step) SetTitle(title string) {
	if st.s == nil {
		st.title = title
		return
	}
	st.s.mu.Lock()
	st.title = title
	st.s.mu.Unlock()
}

// Title is the step's title.
func (st *Step) Title() string {
	if st.s == nil {
		return st.title
	}
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	return st.title
}

// Do runs f as a step titled title and ends it with f's error, which it
// returns.
func (s *Status) Do(title string, f func() error) error {
	st := s.Start(title)
	err := f()
	st.End(err)
	return err
}

// End prints the step's line: ✓ when err is nil, ✗ and the error otherwise.
// Ending a step twice prints once.
func (st *Step) End(err error) {
	s := st.s
	if s == nil || st.done {
		return
	}
	st.done = true
	s.mu.Lock()
	for i, a := range s.active {
		if a == st {
			s.active = append(s.active[:i], s.active[i+1:]...)
			break
		}
	}
	s.clear()
	took := time.Since(st.start).Round(100 * time.Millisecond)
	if err != nil {
		fmt.Fprintf(s.w, "✗ %s (%s): %s\n", st.title, took, s.redact(err.Error()))
	} else {
		fmt.Fprintf(s.w, "✓ %s (%s)\n", st.title, took)
	}
	s.draw()
	s.mu.Unlock()
}
