// Package cli holds what every kbootstrap command shares: the global flags,
// the streams, the exit-code error, inventory loading and node selection, and
// the connection pool of a run.
package cli
