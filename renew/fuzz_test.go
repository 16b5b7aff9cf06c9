package renew

import "testing"

// FuzzHeartbeat: a lock file's line, whatever another run (or anyone who
// may write there) left, parses.
func FuzzHeartbeat(f *testing.F) {
	f.Add("kbootstrap-certs-renew id=ab host=h pid=1 heartbeat=1700000000\n")
	f.Add("heartbeat=99999999999999999999 heartbeat=-5")
	f.Fuzz(func(t *testing.T, line string) {
		_ = heartbeat(line)
	})
}
