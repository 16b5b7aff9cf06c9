// Package e2e holds kbootstrap's end-to-end tests: they build the kbootstrap
// binary and drive it against lab nodes (network namespaces running real
// OpenSSH, see ../lab). They need root, iproute2, debootstrap and sshd; when
// those are missing each test skips with a message saying which.
package e2e
