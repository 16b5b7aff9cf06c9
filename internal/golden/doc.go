// Package golden compares test output with files under a package's
// testdata directory; `go test ./PKG -update` rewrites them. Tests only.
package golden
