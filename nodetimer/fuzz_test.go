package nodetimer

import "testing"

// FuzzPreviousJitter: an installed cron entry, whatever it holds, is read
// back without panicking, and a jitter it returns is in range.
func FuzzPreviousJitter(f *testing.F) {
	j := job()
	f.Add(j.CronEntry(42e9))
	f.Add("17 3 * * * root sleep -5 && x\n17 3 * * * root sleep 99999999999999999999 x")
	f.Fuzz(func(t *testing.T, old string) {
		if jt, ok := j.PreviousJitter(old); ok && (jt < 0 || jt >= j.RandomDelay) {
			t.Fatalf("jitter %s out of [0, %s)", jt, j.RandomDelay)
		}
	})
}
