// Package certs is the `kbootstrap certs` command: `check` audits the PKI of
// the control planes (or of local directories) with package pki; `renew`
// renews them one control plane at a time and `schedule` installs that
// renewal on the control planes, with package renew.
package certs
