// Package node is kbootstrap's access to the machines of a cluster: one small
// interface (run a command, read, stat and atomically write files, dial a TCP
// address from the node's side) with an SSH implementation, one connection per
// host per run, and a local one for --local runs on the node itself.
//
// Privilege is a decorator (Sudo) rather than a flag threaded through every
// call, secrets are redacted at the log writer (Redactor), and Parallel runs a
// step on many nodes with a concurrency bound while keeping every node's result
// and error.
package node
